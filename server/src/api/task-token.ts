/**
 * Task tokens: opaque to workers, versioned and strictly validated here.
 *
 * Layout (big-endian):
 *   u8 version | u8 kind (1 workflow, 2 activity) | 16 B run id | 16 B lease id |
 *   u32 lock version | u32 seq (activity only) | u32 attempt (activity, version 2 only) |
 *   u8 queue length | queue name (ASCII)
 * Workflow tokens are version 1. Activity tokens are version 2 since they carry
 * the attempt, which lets the one outcome write (store/activity-completions.ts)
 * name it in the history event before it has read the task. Version 1 activity
 * tokens (no attempt) were issued only by development builds before
 * 2026-11-29, none of them released; they are refused (INVALID_ARGUMENT), and
 * an attempt one of them still held times out and is retried.
 *
 * The token carries everything the fenced statements match on, so completing a
 * task needs no lookup: `(queue, run, [seq,] lease_id, lock_version)` is the
 * primary key plus the fence. The lease id is random (gen_random_uuid), so a
 * forged token naming a real task still matches nothing.
 */
import { DexError } from "@dex/proto";
import { QUEUE_NAME_PATTERN, type ActivityTaskRef, type WorkflowTaskRef } from "../engine/model.js";

const VERSION = { workflow: 1, activity: 2 } as const;
const MAX_INT32 = 2 ** 31 - 1;
const KIND = { workflow: 1, activity: 2 } as const;

function uuidToBytes(uuid: string): Buffer {
  return Buffer.from(uuid.replace(/-/g, ""), "hex");
}

function bytesToUuid(bytes: Buffer): string {
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function encode(kind: number, ref: WorkflowTaskRef, activity: { seq: number; attempt: number } | undefined): Uint8Array {
  const queue = Buffer.from(ref.queue, "ascii");
  const fixed = 2 + 16 + 16 + 4 + (activity === undefined ? 0 : 8) + 1;
  const out = Buffer.alloc(fixed + queue.length);
  let at = out.writeUInt8(activity === undefined ? VERSION.workflow : VERSION.activity, 0);
  at = out.writeUInt8(kind, at);
  at += uuidToBytes(ref.runId).copy(out, at);
  at += uuidToBytes(ref.leaseId).copy(out, at);
  at = out.writeUInt32BE(ref.lockVersion, at);
  if (activity !== undefined) {
    at = out.writeUInt32BE(activity.seq, at);
    at = out.writeUInt32BE(activity.attempt, at);
  }
  at = out.writeUInt8(queue.length, at);
  queue.copy(out, at);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

function invalid(why: string): DexError {
  return new DexError(
    "INVALID_ARGUMENT",
    `task_token is not a token this server issued (${why}); pass back the task_token of a polled task unchanged`,
  );
}

function decode(
  token: Uint8Array,
  kind: number,
): { ref: WorkflowTaskRef; seq: number | undefined; attempt: number | undefined } {
  if (token.byteLength === 0) throw new DexError("INVALID_ARGUMENT", "task_token is required");
  const buf = Buffer.from(token.buffer, token.byteOffset, token.byteLength);
  if (buf.length < 2) throw invalid("too short");
  const version = buf.readUInt8(0);
  const actualKind = buf.readUInt8(1);
  if (version === 1 && actualKind === KIND.activity) {
    throw new DexError(
      "INVALID_ARGUMENT",
      "task_token is an activity task token of version 1, which this server no longer accepts; the attempt will time out and be retried",
    );
  }
  if (version !== 1 && !(version === VERSION.activity && actualKind === KIND.activity)) throw invalid(`unknown version ${version}`);
  if (actualKind !== kind) {
    throw invalid(actualKind === KIND.workflow ? "it is a workflow task token" : actualKind === KIND.activity ? "it is an activity task token" : "unknown kind");
  }
  const seqBytes = kind === KIND.activity ? 4 : 0;
  const attemptBytes = version === 2 ? 4 : 0;
  const fixed = 2 + 16 + 16 + 4 + seqBytes + attemptBytes + 1;
  if (buf.length < fixed) throw invalid("too short");
  let at = 2;
  const runId = bytesToUuid(buf.subarray(at, (at += 16)));
  const leaseId = bytesToUuid(buf.subarray(at, (at += 16)));
  const lockVersion = buf.readUInt32BE(at);
  at += 4;
  const seq = seqBytes ? buf.readUInt32BE(at) : undefined;
  at += seqBytes;
  const attempt = attemptBytes ? buf.readUInt32BE(at) : undefined;
  at += attemptBytes;
  const queueLength = buf.readUInt8(at);
  at += 1;
  if (buf.length !== at + queueLength) throw invalid("wrong length");
  const queue = buf.subarray(at).toString("ascii");
  if (!QUEUE_NAME_PATTERN.test(queue)) throw invalid("bad queue name");
  // The columns are 32-bit signed integers: the server never issues larger values, and
  // passing one to a statement would fail there (INTERNAL) instead of here.
  if (lockVersion > MAX_INT32) throw invalid("lock version out of range");
  if (seq !== undefined && (seq === 0 || seq > MAX_INT32)) throw invalid("seq out of range");
  if (attempt !== undefined && (attempt === 0 || attempt > MAX_INT32)) throw invalid("attempt out of range");
  return { ref: { queue, runId, leaseId, lockVersion }, seq, attempt };
}

export function encodeWorkflowTaskToken(ref: WorkflowTaskRef): Uint8Array {
  return encode(KIND.workflow, ref, undefined);
}

export function decodeWorkflowTaskToken(token: Uint8Array): WorkflowTaskRef {
  return decode(token, KIND.workflow).ref;
}

export function encodeActivityTaskToken(ref: ActivityTaskRef & { attempt: number }): Uint8Array {
  return encode(KIND.activity, ref, { seq: ref.seq, attempt: ref.attempt });
}

export function decodeActivityTaskToken(token: Uint8Array): ActivityTaskRef {
  const { ref, seq, attempt } = decode(token, KIND.activity);
  // Version 2 (the only activity version decode accepts) always carries the attempt.
  return { ...ref, seq: seq!, attempt: attempt! };
}

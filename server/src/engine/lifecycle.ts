/**
 * What clients do to a running run from outside: send it an external event
 * (optionally starting it first), request its cancellation, terminate it.
 * Each is ONE transaction (inTransaction) that locks the run row before it
 * writes, so it cannot race with the run's end: a run that is open under the
 * lock stays open until the commit, and nobody appends to its history
 * meanwhile (the duplicate check on history is exact).
 *
 * Some transactions are retried as a whole (withRetries):
 * - an instance-id selector resolved to a run that ended before we locked it,
 *   while another run of the instance opened: try again against that run;
 * - SendEventWithStart lost the race on the open-run unique index: try again
 *   against the winner's run (the loser's transaction aborted, so nothing of
 *   it remains);
 * - TerminateRun found the run's workflow task row locked by a claim in
 *   flight (see store/lifecycle.ts header): try again once the claim is done;
 * - CancelRun or TerminateRun found the run waiting in its concurrency key's
 *   line without having taken the key's lock first: try again taking it first
 *   (engine/concurrency-keys.ts, place (b)); or took it first and the run got
 *   a slot meanwhile: try again without it, as for any running run. SendEvent
 *   needs no key lock: it only adds to a waiting run's inbox.
 */
import { create } from "@bufbuild/protobuf";
import { DexError, FailureKind, FailureSchema, type Payload } from "@dex/proto";
import { cancelWaitingRun, lockConcurrencyKey, waitingFor } from "../store/concurrency-keys.js";
import { lockRun, type LockedRun } from "../store/completion-locks.js";
import type { TransactionSql } from "../store/db.js";
import {
  hasEvent,
  insertExternalEvent,
  isLockNotAvailable,
  lockWorkflowTaskNoWait,
  parentOf,
  resolveRunId,
  terminateRunRows,
} from "../store/lifecycle.js";
import { findOpenRun, insertRun } from "../store/runs.js";
import { handOverSlots } from "./concurrency-keys.js";
import type { Engine } from "./context.js";
import { inTransaction, type Effects } from "./effects.js";
import { encodeEvent, encodeFailure, externalEventBytes, externalEventIdentity, type ExternalEventIdentity } from "./events.js";
import { DedupKind, dedupKey, isTerminal, QueueType, RunStatus } from "./model.js";
import { afterRunEnded, cancelRuns } from "./relatives.js";
import { runEnded, runReuseRejected } from "./run-refusals.js";
import type { RunSelector } from "./runs.js";
import { newRun, ReusePolicy, type StartRequest } from "./start.js";


/** Whole-transaction attempts before a call gives up with ABORTED (each retry follows a concurrent change). */
const MAX_ATTEMPTS = 10;

/**
 * Thrown inside a transaction to roll it back and run it again; `keyFirst`:
 * the next attempt takes that concurrency key's lock before any row lock.
 */
export class Retry extends Error {
  constructor(readonly keyFirst?: string) {
    super("retry");
  }
}

/** What one attempt of a retried transaction learned from the previous one. */
interface Attempt {
  /** Take this concurrency key's lock first: the run was found waiting in its line. */
  keyFirst: string | undefined;
}

function eventDedupKey(eventId: string): string {
  return dedupKey(DedupKind.EVENT, eventId);
}

/**
 * inTransaction, run again (fresh transaction, fresh effects) when the body
 * throws Retry (an open run appeared, a run ended meanwhile) or lock_not_available. Between
 * attempts a short, growing pause lets the concurrent writer finish.
 */
export async function withRetries<T>(
  engine: Engine,
  what: string,
  fn: (tx: TransactionSql, effects: Effects, state: Attempt) => Promise<T>,
): Promise<T> {
  const state: Attempt = { keyFirst: undefined };
  for (let attempt = 1; ; attempt++) {
    try {
      return await inTransaction(engine, (tx, effects) => fn(tx, effects, state));
    } catch (err) {
      if (!(err instanceof Retry || isLockNotAvailable(err))) throw err;
      state.keyFirst = err instanceof Retry ? err.keyFirst : undefined;
      if (attempt >= MAX_ATTEMPTS) {
        throw new DexError("ABORTED", `${what} kept conflicting with concurrent changes to the run; retry the call`, {
          cause: err,
        });
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(2 ** attempt, 50)));
    }
  }
}

function notFound(selector: RunSelector): DexError {
  return new DexError(
    "NOT_FOUND",
    "runId" in selector ? `run ${selector.runId} not found` : `no run of instance id "${selector.instanceId}" found`,
  );
}

function ended(run: LockedRun, what: string): DexError {
  return new DexError("FAILED_PRECONDITION", `run ${run.id} has already ended (${run.status}); ${what}`, { details: runEnded(run) });
}

/**
 * Place (b) of engine/concurrency-keys.ts: when the previous attempt found the
 * run waiting for its concurrency key, take the key's lock before any row lock,
 * then check, in a statement that sees every decision taken under the lock,
 * that the run still waits. If it got a slot (or ended) meanwhile, retry
 * without the key's lock: holding it while waiting for a slot holder's row
 * could deadlock with that run's completion, which takes the key last.
 */
export async function keyLockFirst(tx: TransactionSql, runId: string, state: Attempt): Promise<void> {
  if (state.keyFirst === undefined) return;
  await lockConcurrencyKey(tx, state.keyFirst);
  if ((await waitingFor(tx, runId)) !== state.keyFirst) throw new Retry();
}

/**
 * After lockRun: a run waiting for its key, locked without the key's lock,
 * makes the transaction roll back at once, before it waits for anything (the
 * hand-over may be waiting for this row while holding the key's lock), and
 * retry with the key's lock first.
 */
export function requireKeyLock(run: LockedRun, state: Attempt): void {
  if (run.concurrencyWaiting && run.concurrencyKey !== state.keyFirst) throw new Retry(run.concurrencyKey!);
}

/**
 * Locks the selected run. An instance-id selector means the instance's open
 * run, else its newest; it is read unlocked, so if the run we locked has ended
 * and the instance now resolves to another run, the transaction is retried.
 * With `keys` (a call that may end the run, and so hand out its key's slots),
 * a run waiting for its concurrency key is locked only after its key's lock.
 * Without, the caller must wait for nothing while it holds a waiting run's
 * row but that run's own rows (SendEvent: its inbox), so that the hand-over,
 * which may wait for the row while holding the key's lock, is never blocked
 * for long and never in a cycle.
 */
async function lockSelected(tx: TransactionSql, selector: RunSelector, keys?: Attempt): Promise<LockedRun> {
  const runId = await resolveRunId(tx, selector);
  if (!runId) throw notFound(selector);
  if (keys) await keyLockFirst(tx, runId, keys);
  const run = await lockRun(tx, runId);
  if (!run) throw notFound(selector);
  if (keys) requireKeyLock(run, keys);
  if ("instanceId" in selector && isTerminal(run.status as RunStatus)) {
    const now = await resolveRunId(tx, selector);
    if (now !== run.id) throw new Retry();
  }
  return run;
}

/** Puts the event in the locked, open run's inbox and wakes the run (see insertExternalEvent). */
async function deliver(
  tx: TransactionSql,
  effects: Effects,
  run: LockedRun,
  event: Uint8Array,
  identity: ExternalEventIdentity,
): Promise<boolean> {
  const outcome = await insertExternalEvent(tx, run, { event, eventId: identity.eventId, dedup: identity.dedup });
  if (outcome.taskCreated) effects.wakeQueue(QueueType.WORKFLOW, run.taskQueue);
  return outcome.duplicate;
}

export async function sendEvent(
  engine: Engine,
  request: { selector: RunSelector; eventId: string; eventName: string; payload: Payload | undefined },
): Promise<{ runId: string; duplicate: boolean; eventId: string }> {
  const identity = externalEventIdentity(request.eventId, request.eventName);
  const event = externalEventBytes(identity, request.payload);
  return withRetries(engine, "SendEvent", async (tx, effects) => {
    const run = await lockSelected(tx, request.selector);
    if (isTerminal(run.status as RunStatus)) throw ended(run, "it cannot receive events");
    const duplicate = await deliver(tx, effects, run, event, identity);
    return { runId: run.id, duplicate, eventId: identity.eventId };
  });
}

/**
 * Signal-with-start: the instance's open run gets the event; without one, a
 * run is started (StartWorkflow's checks and policies, bar the conflict
 * policy: an open run is exactly what this call wants) and gets the event in
 * the same transaction. Concurrent calls race on the open-run unique index:
 * the losers' inserts wait for the winner's commit, fail, and their retries
 * find the winner's run, so one run is created and each event delivered once.
 * A run started with a concurrency key joins its key's line and gets a slot
 * at the end of the transaction if one is free; the event waits in its inbox
 * either way and comes with its first task.
 */
export async function sendEventWithStart(
  engine: Engine,
  request: StartRequest & { eventId: string; eventName: string; payload: Payload | undefined },
): Promise<{ runId: string; started: boolean; duplicate: boolean; eventId: string }> {
  const identity = externalEventIdentity(request.eventId, request.eventName);
  const event = externalEventBytes(identity, request.payload);
  const eventId = identity.eventId;
  return withRetries(engine, `SendEventWithStart for instance id "${request.instanceId}"`, async (tx, effects) => {
    const open = await findOpenRun(tx, request.instanceId);
    let runId: string;
    let started = false;
    if (open) {
      runId = open.id;
    } else {
      const outcome = await insertRun(tx, newRun(request));
      switch (outcome.outcome) {
        case "open_run_exists":
          // Another start won since findOpenRun read: start over and deliver to that run.
          throw new Retry();
        case "started":
          runId = outcome.runId;
          started = true;
          // A keyed run's queue is woken by the hand-over below, if it gets a slot.
          if (request.concurrencyKey === null) effects.wakeQueue(QueueType.WORKFLOW, request.taskQueue);
          break;
        case "same_request":
          // A retry of the call that started this run.
          runId = outcome.runId;
          break;
        case "queue_missing":
          throw new DexError(
            "NOT_FOUND",
            `start.task_queue: workflow task queue "${request.taskQueue}" does not exist; create it first (TaskQueueService.CreateTaskQueue)`,
          );
        case "reuse_rejected":
          throw new DexError(
            "ALREADY_EXISTS",
            `instance id "${request.instanceId}" has no open run to receive the event, its latest run ${outcome.latestRunId} ` +
              `ended ${outcome.latestStatus}, and start.reuse_policy ` +
              (request.reusePolicy === ReusePolicy.REJECT
                ? "REJECT forbids another run"
                : "ALLOW_IF_FAILED allows another run only after a failed, cancelled or terminated one"),
            { details: runReuseRejected(request.instanceId, outcome.latestRunId, outcome.latestStatus) },
          );
      }
    }
    // A waiting run is locked without its key's lock: delivering to it only writes its inbox (see lockSelected).
    const run = await lockRun(tx, runId);
    if (!run) throw new Error(`run ${runId} vanished`);
    if (isTerminal(run.status as RunStatus)) {
      if (open) throw new Retry(); // it ended between the read and the lock
      // The same request id started this run, which has ended since: if this
      // call's event reached it, the call is a retry that already succeeded.
      if (identity.dedup && (await hasEvent(tx, run.id, eventDedupKey(eventId)))) return { runId: run.id, started: false, duplicate: true, eventId };
      throw ended(run, `it was started by this request id (${request.requestId}) and cannot receive events any more`);
    }
    const duplicate = await deliver(tx, effects, run, event, identity);
    // Last: the new run may take a free slot of its key (place (a) of concurrency-keys.ts).
    if (started && run.concurrencyKey !== null) await handOverSlots(tx, effects, run.concurrencyKey);
    if (started) engine.logger.debug("run started by an event", { runId, workflow: run.workflowName, instanceId: request.instanceId, eventId, eventName: identity.eventName });
    return { runId: run.id, started, duplicate, eventId };
  });
}

/**
 * CancelRun: marks the run, puts `cancel_requested` in its inbox and gives it
 * a workflow task, once (store requestCancellation). The workflow decides how
 * to end.
 */
export async function cancelRun(
  engine: Engine,
  request: { selector: RunSelector; reason: string },
): Promise<{ runId: string; alreadyRequested: boolean }> {
  return withRetries(engine, "CancelRun", async (tx, effects, state) => {
    const run = await lockSelected(tx, request.selector, state);
    if (isTerminal(run.status as RunStatus)) throw ended(run, "there is nothing to cancel");
    // A waiting run has no parent (children carry no key); one with a parent
    // would need it locked first to hear the end, so it would only be asked.
    if (run.concurrencyWaiting && run.parentRunId === null) {
      await cancelWaiting(engine, tx, effects, run, request.reason);
      return { runId: run.id, alreadyRequested: false };
    }
    if (run.cancelRequested) return { runId: run.id, alreadyRequested: true };
    const marked = await cancelRuns(tx, effects, { runIds: [run.id] }, request.reason);
    if (!marked.includes(run.id)) throw new Error(`run ${run.id}: cancellation was not recorded`);
    engine.logger.debug("run cancellation requested", { runId: run.id, workflow: run.workflowName });
    return { runId: run.id, alreadyRequested: false };
  });
}

/**
 * CancelRun of a run waiting in its concurrency key's line: it never ran, so
 * it ends CANCELLED at once (as a queued job is removed from its queue)
 * instead of waiting for a slot only to see the request. The caller holds the
 * key's lock (taken first, place (b)) and the run's lock; the run behind it in
 * line may fit now, so the key's slots are handed out last.
 */
async function cancelWaiting(engine: Engine, tx: TransactionSql, effects: Effects, run: LockedRun, reason: string): Promise<void> {
  const key = run.concurrencyKey!;
  const failure = encodeFailure(
    create(FailureSchema, {
      message: `run cancelled before it started (it was waiting for concurrency key "${key}")${reason === "" ? "" : `: ${reason}`}`,
      type: "CancelledError",
      kind: FailureKind.CANCELLED,
    }),
  )!;
  const event = encodeEvent({ case: "cancelRequested", value: { reason } }).event;
  if (!(await cancelWaitingRun(tx, run, { reason, event, failure }))) {
    throw new Error(`run ${run.id} stopped waiting although its key's lock is held`);
  }
  await afterRunEnded(engine, tx, effects, run, undefined, { status: RunStatus.CANCELLED, result: null, failure });
  await handOverSlots(tx, effects, key);
  effects.wakeRun(run.id);
  engine.logger.debug("waiting run cancelled", { runId: run.id, workflow: run.workflowName, concurrencyKey: key });
}

/**
 * TerminateRun: ends the run at once. Locks the parent first (ancestor before
 * descendant), then the run, then its workflow task NOWAIT (a claim in flight
 * on a CREATED run waits for our run lock: we retry rather than wait). Then
 * one statement drops the run's tasks, inbox and timers and appends
 * `run_terminated`; the parent hears `child_run_ended` and the CANCEL-policy
 * children get cancellation requests, all in the same transaction. A run with
 * a concurrency key frees its slot or leaves its key's line; last, the key's
 * free slots are handed out.
 */
export async function terminateRun(
  engine: Engine,
  request: { selector: RunSelector; reason: string },
): Promise<{ runId: string }> {
  const { event, failure } = terminationRecords(request.reason, "");
  return withRetries(engine, "TerminateRun", async (tx, effects, state) => {
    const runId = await resolveRunId(tx, request.selector);
    if (!runId) throw notFound(request.selector);
    // Before the parent's lock: a waiting run's key lock comes before any row lock.
    await keyLockFirst(tx, runId, state);
    // parent_run_id never changes, so it can be read before any lock.
    const parentId = await parentOf(tx, runId);
    const parent = parentId ? await lockRun(tx, parentId) : undefined;
    const run = await lockSelected(tx, request.selector, state);
    if (run.id !== runId) throw new Retry(); // the instance resolved to another run: lock its parent instead
    if (isTerminal(run.status as RunStatus)) throw ended(run, "there is nothing to terminate");
    await terminateLocked(engine, tx, effects, run, parent, { event, failure });
    if (run.concurrencyKey !== null) await handOverSlots(tx, effects, run.concurrencyKey);
    effects.wakeRun(run.id);
    engine.logger.info("run terminated", { runId: run.id, workflow: run.workflowName, reason: request.reason });
    return { runId: run.id };
  });
}

/** The run_terminated event and the failure a terminated run ends with; `resetToRunId` for ResetRun. */
export function terminationRecords(reason: string, resetToRunId: string): { event: Uint8Array; failure: Uint8Array } {
  const failure = encodeFailure(
    create(FailureSchema, {
      message: reason === "" ? "run terminated" : `run terminated: ${reason}`,
      type: "Terminated",
      nonRetryable: true,
      kind: FailureKind.TERMINATED,
    }),
  )!;
  const event = encodeEvent({ case: "runTerminated", value: { reason, resetToRunId } }).event;
  return { event, failure };
}

/**
 * TerminateRun's writes, shared with ResetRun (engine/reset.ts): the caller
 * holds the parent's lock (if any), then the open run's; the run's workflow
 * task is locked NOWAIT (lock_not_available makes withRetries try again).
 * The caller hands out the run's concurrency-key slot, or takes it over.
 */
export async function terminateLocked(
  engine: Engine,
  tx: TransactionSql,
  effects: Effects,
  run: LockedRun,
  parent: LockedRun | undefined,
  records: { event: Uint8Array; failure: Uint8Array },
): Promise<void> {
  await lockWorkflowTaskNoWait(tx, run);
  await terminateRunRows(tx, run, records);
  await afterRunEnded(engine, tx, effects, run, parent, { status: RunStatus.TERMINATED, result: null, failure: records.failure });
}

/**
 * `ctx.sideEffect(fn)`: a value read once (the real clock, a random id) and
 * recorded, so replay returns the recorded value without running `fn`.
 *
 * Live: `fn` runs once, outside the determinism guard (reading the real clock
 * or randomness is its purpose), and its value is recorded. Replay: the value
 * comes from the block's `side_effect_recorded` command events, read before
 * the block's code runs. The value goes through its JSON encoding in both
 * cases, so live code sees exactly what replay will.
 */
import { create } from "@bufbuild/protobuf";
import { CommandSchema, type Command, type HistoryEvent, type Payload } from "@dex/proto";
import { decodePayload, encodePayload } from "../common/payload.js";
import { classifyEvent } from "./commands.js";
import { decodeInput } from "./inputs.js";

/** What a side effect needs from the execution. */
export interface SideEffectHost {
  readonly ended: boolean;
  readonly replaying: boolean;
  /** Takes the next command seq. */
  takeSeq(): number;
  push(command: Command): void;
  /** Fails the current workflow task with `error`. */
  violation(error: Error): void;
  /** Runs `fn` outside the determinism guard. */
  outside<T>(fn: () => T): T;
}

/** What calls after a terminal command (and diverged side effects) return: they never settle. */
const never = (): Promise<never> => new Promise<never>(() => {});

export class SideEffects {
  /** While replaying a block: its recorded `side_effect_recorded` events by seq. */
  private recorded = new Map<number, HistoryEvent>();

  /** Reads the recorded values of the block whose command events start at `from`. */
  readBlock(events: readonly HistoryEvent[], from: number): void {
    this.recorded = new Map();
    for (let i = from; i < events.length && classifyEvent(events[i]!) === "command"; i++) {
      const a = events[i]!.attributes;
      if (a.case === "sideEffectRecorded") this.recorded.set(a.value.seq, events[i]!);
    }
  }

  /** Replay is over: live calls record new values. */
  clear(): void {
    this.recorded = new Map();
  }

  call(host: SideEffectHost, fn: () => unknown): Promise<unknown> {
    if (host.ended) return never();
    if (typeof fn !== "function") return Promise.reject(new TypeError("ctx.sideEffect expects a function"));
    const seq = host.takeSeq();
    const record = (value: Payload | undefined): void => {
      host.push(create(CommandSchema, { command: { case: "recordSideEffect", value: { seq, value } } }));
    };
    if (host.replaying) {
      const recorded = this.recorded.get(seq);
      if (recorded?.attributes.case !== "sideEffectRecorded") {
        // History has no value for this call: the code diverged. The command (fn is not run) lets the
        // replay check name the divergence; the call never settles.
        record(undefined);
        return never();
      }
      record(recorded.attributes.value.value);
      try {
        return Promise.resolve(decodeInput(recorded.attributes.value.value, recorded));
      } catch (err) {
        host.violation(asError(err));
        return never();
      }
    }
    let value: unknown;
    try {
      value = host.outside(fn);
    } catch (err) {
      // Nothing can be recorded for a function that threw, and running it again on replay could take
      // another path: the workflow task fails instead, and its retry runs the function again.
      host.violation(new Error(`ctx.sideEffect: the function threw: ${asError(err).message}`, { cause: err }));
      return never();
    }
    if (isThenable(value)) {
      host.violation(new TypeError("ctx.sideEffect: the function must return its value synchronously; do asynchronous work in an activity"));
      return never();
    }
    let payload: Payload;
    try {
      payload = encodePayload(value);
    } catch (err) {
      host.violation(asError(err));
      return never();
    }
    record(payload);
    return Promise.resolve(decodePayload(payload));
  }
}

function isThenable(value: unknown): boolean {
  return typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function";
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

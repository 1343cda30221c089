/**
 * The awaits a workflow has outstanding, by `seq`: activities, timers, event
 * waits and children. An input event settles the await its `seq` names; a
 * cancellation (of the run or of a scope) rejects the ones it reaches. An outcome that arrives
 * for an await no longer here (rejected by cancellation, or the time-out of an
 * event wait an event already satisfied) is ignored, as docs/worker-protocol.md specifies.
 */
import { create } from "@bufbuild/protobuf";
import { CommandSchema, type Command, type HistoryEvent } from "@dex/proto";
import { NonDeterminismError } from "../common/errors.js";
import type { ScopeNode } from "./cancellation.js";
import { eventKindName } from "./commands.js";
import { buildDropEventWait } from "./events.js";
import { replayHint } from "./replay-check.js";

export type AwaitTarget =
  | { readonly kind: "activity"; readonly name: string }
  | { readonly kind: "timer" }
  | { readonly kind: "eventWait"; readonly eventName: string; readonly timed: boolean }
  | { readonly kind: "child"; readonly workflowName: string; readonly instanceId: string; readonly abandon: boolean; runId: string };

export type AwaitKind = AwaitTarget["kind"];

export interface PendingAwait {
  readonly seq: number;
  readonly target: AwaitTarget;
  /** The cancellation scope current where the await was started. */
  readonly scope: ScopeNode;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class PendingAwaits {
  private readonly bySeq = new Map<number, PendingAwait>();

  add(seq: number, target: AwaitTarget, scope: ScopeNode): Promise<unknown> {
    return new Promise((resolve, reject) => this.bySeq.set(seq, { seq, target, scope, resolve, reject }));
  }

  /** Removes the await of `seq` without settling it (a condition's timer it no longer needs). */
  remove(seq: number): PendingAwait | undefined {
    const found = this.bySeq.get(seq);
    this.bySeq.delete(seq);
    return found;
  }

  /**
   * The await that `event` settles, removed; undefined when it was already
   * settled. `issuedUpTo` is the highest seq the code has issued: an outcome for
   * a later seq (or for a different kind of command) means the code diverged.
   */
  take(seq: number, kind: AwaitKind, event: HistoryEvent, issuedUpTo: number): PendingAwait | undefined {
    const found = this.peek(seq, kind, event, issuedUpTo);
    if (found) this.bySeq.delete(seq);
    return found;
  }

  /** Like take, without removing it (a child that started but has not ended). */
  peek(seq: number, kind: AwaitKind, event: HistoryEvent, issuedUpTo: number): PendingAwait | undefined {
    const found = this.bySeq.get(seq);
    if (found && found.target.kind === kind) return found;
    if (found || seq > issuedUpTo) {
      const issued = found ? `issued a ${found.target.kind} with that seq` : "issued no command with that seq";
      throw new NonDeterminismError(
        `non-determinism at history event ${event.sequence}: ${eventKindName(event)} for seq ${seq}, ` +
          `but the workflow code ${issued}. ${replayHint}`,
        { eventSequence: Number(event.sequence), eventKind: eventKindName(event) },
      );
    }
    return undefined;
  }

  /** The oldest pending wait for an event of `name`, removed: each event settles one wait (events.ts). */
  takeOldestEventWait(name: string): PendingAwait | undefined {
    // Map order is insertion order, and seqs are added in the order the waits were started.
    for (const [seq, p] of this.bySeq) {
      if (p.target.kind === "eventWait" && p.target.eventName === name) {
        this.bySeq.delete(seq);
        return p;
      }
    }
    return undefined;
  }

  /** Every pending await, in seq order, untouched (the built-in `__dex_pending` query, query.ts). */
  list(): PendingAwait[] {
    return [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
  }

  /** Removes and returns every await a cancellation of `cancelled` reaches, in the order they were started. */
  takeReachedBy(cancelled: ScopeNode): PendingAwait[] {
    const taken: PendingAwait[] = [];
    for (const [seq, p] of this.bySeq) {
      if (!p.scope.reachedBy(cancelled)) continue;
      this.bySeq.delete(seq);
      taken.push(p);
    }
    return taken;
  }
}

/**
 * The command that tells the server to stop the work behind a cancelled await,
 * if it has one. An event wait, timed or not, is dropped with the command an
 * event-satisfied timed wait gets (`cancel_timer` with its seq, events.ts):
 * the server deletes its time-out (which would fire days later) and describe
 * stops showing the wait, which it otherwise would until an event of its name
 * arrived. Replay lets it be missing from histories written before. An
 * abandoned child is left running.
 */
export function cancelCommandFor(p: PendingAwait): Command | undefined {
  const seq = p.seq;
  switch (p.target.kind) {
    case "activity":
      return create(CommandSchema, { command: { case: "requestCancelActivity", value: { seq } } });
    case "timer":
      return create(CommandSchema, { command: { case: "cancelTimer", value: { seq } } });
    case "child":
      return p.target.abandon ? undefined : create(CommandSchema, { command: { case: "requestCancelChildRun", value: { seq } } });
    case "eventWait":
      return buildDropEventWait(seq, p.target.timed);
  }
}

/**
 * `ctx.condition(predicate, { timeout })`: waits until a predicate over the
 * workflow's own state holds (decision 0017).
 *
 * State only changes while workflow code runs: in the drains of execution.ts,
 * after a block's inputs were delivered, and in event handlers (`ctx.onEvent`),
 * which run as their event is delivered, before that drain. So a waiting
 * predicate is evaluated at exactly these points, the same live and on replay:
 * once when `condition` is called (true: it resolves at once, nothing issued),
 * then after every drain, in the order the conditions were started, again and
 * again until a pass settles none (a resolved condition lets code run that may
 * make another predicate true). Evaluating it once per delivered input would
 * change nothing: what a handler changed is seen by the evaluation after the
 * drain, before any other workflow code could observe the predicate.
 *
 * With a timeout the condition issues a durable timer (`start_timer`). The
 * firing only marks the condition timed out; the next evaluation pass still
 * lets a predicate made true by the same task win (resolves `true`), else the
 * condition resolves `false`. A condition that resolves `true` while its timer
 * is pending drops the timer with `cancel_timer` in the same task.
 *
 * A predicate that throws (or returns a promise) rejects its condition with
 * that error: the awaiting code can catch it, and uncaught it ends up like any
 * other error thrown by workflow code.
 */
import { CancelledFailure } from "../common/errors.js";
import { parseDuration, type Duration } from "../common/duration.js";
import type { ScopeNode } from "./cancellation.js";
import { MAX_TIMER_MS } from "./command-builders.js";
import type { ConditionOptions } from "./types.js";

export interface ConditionHost {
  currentScope(): ScopeNode;
  /** True once the run produced a terminal command: new waits never settle. */
  ended(): boolean;
  /** Issues `start_timer` for `ms`; returns its seq and the promise its firing settles. */
  startTimer(ms: number): { seq: number; fired: Promise<unknown> };
  /** Drops the pending timer of `seq` and issues `cancel_timer`; nothing when it already fired. */
  cancelTimer(seq: number): void;
}

interface ConditionWait {
  readonly predicate: () => unknown;
  readonly scope: ScopeNode;
  timerSeq: number | undefined;
  timedOut: boolean;
  resolve(held: boolean): void;
  reject(error: unknown): void;
}

export class ConditionWaits {
  /** In the order the conditions were started: the order of evaluation. */
  private waits: ConditionWait[] = [];

  constructor(private readonly host: ConditionHost) {}

  /** Conditions waiting now (the built-in `__dex_pending` query). */
  get waiting(): number {
    return this.waits.length;
  }

  start(predicate: () => boolean, options: ConditionOptions = {}): Promise<boolean> {
    if (typeof predicate !== "function") return Promise.reject(new TypeError("ctx.condition expects a predicate function"));
    let timeoutMs: number | undefined;
    try {
      timeoutMs = options.timeout === undefined ? undefined : conditionTimeoutMs(options.timeout);
    } catch (err) {
      return Promise.reject(err);
    }
    const scope = this.host.currentScope();
    if (scope.rejectsNewAwaits()) return Promise.reject(scope.cancelledFailure());
    try {
      if (evaluate(predicate)) return Promise.resolve(true);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.host.ended()) return new Promise<never>(() => {});
    let settle!: Pick<ConditionWait, "resolve" | "reject">;
    const result = new Promise<boolean>((resolve, reject) => (settle = { resolve, reject }));
    const wait: ConditionWait = { predicate, scope, timerSeq: undefined, timedOut: false, ...settle };
    this.waits.push(wait);
    if (timeoutMs !== undefined) {
      const timer = this.host.startTimer(timeoutMs);
      wait.timerSeq = timer.seq;
      // A cancelled timer needs no handling here: the same cancellation reaches the condition (same scope).
      timer.fired.then(() => (wait.timedOut = true), () => {});
    }
    // Like every other await: a condition the code never awaits must not crash the worker when rejected.
    result.catch(() => {});
    return result;
  }

  /** One evaluation pass, in start order; true when it settled any condition. */
  check(): boolean {
    if (this.waits.length === 0) return false;
    let settled = false;
    for (const wait of [...this.waits]) {
      let held: boolean;
      try {
        held = evaluate(wait.predicate);
      } catch (err) {
        this.finish(wait);
        wait.reject(err);
        settled = true;
        continue;
      }
      if (!held && !wait.timedOut) continue;
      this.finish(wait);
      wait.resolve(held);
      settled = true;
    }
    return settled;
  }

  /** Rejects the waiting conditions a cancellation of `cancelled` reaches (their timers are pending awaits it reaches too). */
  rejectReachedBy(cancelled: ScopeNode, message: string): void {
    for (const wait of [...this.waits]) {
      if (!wait.scope.reachedBy(cancelled)) continue;
      this.waits = this.waits.filter((w) => w !== wait);
      wait.reject(new CancelledFailure(message));
    }
  }

  private finish(wait: ConditionWait): void {
    this.waits = this.waits.filter((w) => w !== wait);
    if (wait.timerSeq !== undefined && !wait.timedOut) this.host.cancelTimer(wait.timerSeq);
  }
}

function evaluate(predicate: () => unknown): boolean {
  const value = predicate();
  if (typeof value === "object" && value !== null && typeof (value as { then?: unknown }).then === "function") {
    throw new TypeError("ctx.condition: the predicate must return a boolean synchronously; it returned a promise");
  }
  return Boolean(value);
}

function conditionTimeoutMs(timeout: Duration): number {
  let ms: number;
  try {
    ms = parseDuration(timeout);
  } catch (err) {
    throw new TypeError(`ctx.condition: ${(err as Error).message}`);
  }
  if (ms > MAX_TIMER_MS) throw new RangeError(`ctx.condition: timeout ${String(timeout)} is longer than 10 years, the longest timer the server accepts`);
  return ms;
}

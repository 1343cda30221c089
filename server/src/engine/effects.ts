/**
 * What a transaction must announce once it has committed: queues that got
 * tasks (parked polls here and, through NOTIFY, on other servers), runs that
 * changed (result and history waiters) and timers it created (this server's
 * timer loop sleeps until the earliest). Announcing before the commit would
 * wake waiters that then find nothing; so writes collect their effects here,
 * and `inTransaction` applies the in-process wakes after the commit and hands
 * the cross-server NOTIFYs to engine/notifier.ts.
 */
import type { EngineObserver } from "../metrics/observer.js";
import type { TransactionSql } from "../store/db.js";
import { queueWakeupPayload, runWakeupPayload } from "../store/notify.js";
import type { Engine } from "./context.js";
import { notifyAfterCommit } from "./notifier.js";
import type { QueueType } from "./model.js";

export class Effects {
  private readonly queues = new Map<string, { type: QueueType; queue: string; count: number }>();
  /** Runs that changed, and whether each may have ended (see Wakeups.wakeRun). */
  private readonly runs = new Map<string, boolean>();
  private earliestTimer: Date | undefined;
  private readonly observations: Array<(observer: EngineObserver) => void> = [];

  /** A task was created on this queue (count: how many). */
  wakeQueue(type: QueueType, queue: string, count = 1): void {
    const key = `${type}:${queue}`;
    const entry = this.queues.get(key);
    if (entry) entry.count += count;
    else this.queues.set(key, { type, queue, count });
  }

  /** The run's history or status changed; `ended: false` if this transaction knows it is still open. */
  wakeRun(runId: string, change: { ended?: boolean } = {}): void {
    this.runs.set(runId, (this.runs.get(runId) ?? false) || change.ended !== false);
  }

  /** A timer now fires at `at`. */
  timerAt(at: Date): void {
    if (!this.earliestTimer || at < this.earliestTimer) this.earliestTimer = at;
  }

  /** Something to report to the engine's observer (metrics) once committed: a rolled-back write reports nothing. */
  observe(report: (observer: EngineObserver) => void): void {
    this.observations.push(report);
  }

  /** The cross-server wake-ups of what this transaction did (store/notify.ts payloads). */
  payloads(origin: string): string[] {
    return [
      ...[...this.queues.values()].map((q) => queueWakeupPayload(q.type, q.queue, origin)),
      ...[...this.runs.keys()].map((runId) => runWakeupPayload(runId, origin)),
    ];
  }

  /** In-process wakes; call after the commit. */
  apply(engine: Engine): void {
    for (const { type, queue, count } of this.queues.values()) engine.wakeups.wakeQueue(type, queue, count);
    for (const [runId, mayHaveEnded] of this.runs) engine.wakeups.wakeRun(runId, mayHaveEnded ? {} : { ended: false });
    if (this.earliestTimer) engine.timerHint(this.earliestTimer);
    for (const report of this.observations) report(engine.observer);
  }
}

/**
 * Runs `fn` in a transaction and announces its effects after the commit: in-process wakes at once,
 * cross-server NOTIFYs batched with other commits' (engine/notifier.ts says why not at commit).
 */
export async function inTransaction<T>(
  engine: Engine,
  fn: (tx: TransactionSql, effects: Effects) => Promise<T>,
): Promise<T> {
  const effects = new Effects();
  const result = await engine.sql.begin((tx) => fn(tx, effects));
  effects.apply(engine);
  notifyAfterCommit(engine, effects.payloads(engine.origin));
  return result as T;
}

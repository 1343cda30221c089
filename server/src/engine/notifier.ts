/**
 * Cross-server wake-ups, sent after commit, many commits' worth per statement:
 * the only way a server tells the others (store/notify.ts describes the
 * mechanism and the payloads). Every write that makes work for another
 * server's waiters commits first and then hands its payloads here: through
 * Effects and inTransaction (engine/effects.ts) for transactions, or through
 * `notifyAfterCommit` / `announceQueues` after a single statement returned.
 *
 * Why not NOTIFY inside the writing transaction: Postgres takes one global lock
 * (AccessExclusiveLock on database 0) at the commit of every transaction that
 * has NOTIFYed, and holds it through that commit's WAL flush. Measured during
 * a backlog drain: about one pool connection waiting on that lock at all times,
 * the commits of completions serialised one flush each (a drain of about 350
 * runs/s). Sent after commit instead, a batch of payloads is one statement on
 * the dispatch pool, whose commits are asynchronous (no flush under the lock),
 * and the writing transactions commit in parallel again.
 *
 * What it costs: a server that dies between a commit and its NOTIFY loses that
 * wake-up, and another server's parked polls and waiters find the work at their
 * fallback tick (queues 2 s, history readers 2 s, result waiters 10 s) instead
 * of at once. In-process wakes are unaffected (Effects.apply). A NOTIFY that
 * fails is logged and dropped, for the same reason.
 */
import { queueWakeupPayload, sendWakeups } from "../store/notify.js";
import type { Engine } from "./context.js";
import { GroupCommit, perEngine } from "./group-commit.js";

const notifierOf = perEngine(
  (engine: Engine) =>
    new GroupCommit<readonly string[], void>(
      async (batches) => {
        await sendWakeups(engine.dispatchSql ?? engine.sql, batches.flat());
        return batches.map(() => ({ ok: true as const, value: undefined }));
      },
      { maxBatch: 1_000, maxInFlight: 1, operation: "wakeup" },
    ),
);

/** Sends these payloads on the wake-up channel soon; call after the commit that made them true. */
export function notifyAfterCommit(engine: Engine, payloads: readonly string[]): void {
  if (payloads.length === 0) return;
  notifierOf(engine)
    .submit(payloads)
    .catch((err: unknown) => {
      engine.logger.warn("a cross-server wake-up could not be sent; other servers find the work at their fallback tick", { err });
    });
}

/**
 * Tells the other servers' parked polls of these queues to claim: tasks were committed there, came
 * due, or the queue opened up. Call after the commit; this server's own polls are woken in-process.
 */
export function announceQueues(engine: Engine, type: string, queues: Iterable<string>): void {
  notifyAfterCommit(engine, [...queues].map((queue) => queueWakeupPayload(type, queue, engine.origin)));
}

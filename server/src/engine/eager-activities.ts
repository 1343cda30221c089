/**
 * Eager activity dispatch (docs/worker-protocol.md "Eager activities"): a
 * workflow-task completion that schedules activities on a queue an activity
 * worker of the completing process serves hands some of them straight back,
 * leased to that worker. The SQL is store/completion.ts insertActivityTasks
 * (the tasks are inserted leased, with the claim's lease and capacity rules);
 * this module decides what may be offered and what the answer holds.
 */
import type { EagerOffer, EagerActivityRow } from "../store/completion.js";
import type { PolledActivityTask } from "./activity-tasks.js";
import type { Effects } from "./effects.js";
import { QueueType } from "./model.js";

export type { EagerOffer };

/**
 * The offers worth passing to the insert: the queues this completion creates
 * tasks on (each existed when checked), with at least one slot; none when the
 * completion ends the run (finishWorkflowTask drops an ended run's activity
 * tasks). An offer for any other queue would only cost claim_limit a read (or
 * fail on a queue that does not exist).
 */
export function usableOffers(
  offers: readonly EagerOffer[],
  activities: ReadonlyArray<{ queue: string }>,
  endsRun: boolean,
): EagerOffer[] {
  if (endsRun || offers.length === 0) return [];
  const queues = new Set(activities.map((a) => a.queue));
  return offers.filter((o) => o.slots > 0 && queues.has(o.queue));
}

/**
 * The eager tasks as a poll hands them out, and what they mean for the queue's
 * wake-ups and metrics: a task handed out eagerly wakes no poll (no poll may
 * take it), and counts as dispatched (after 0 ms) and as eager.
 */
export function dispatchedEagerly(rows: readonly EagerActivityRow[], effects: Effects): PolledActivityTask[] {
  const perQueue = new Map<string, number>();
  for (const row of rows) perQueue.set(row.queue, (perQueue.get(row.queue) ?? 0) + 1);
  for (const [queue, count] of perQueue) {
    effects.observe((o) => {
      for (let i = 0; i < count; i++) o.dispatched(QueueType.ACTIVITY, queue, 0);
      o.dispatchedEagerly(QueueType.ACTIVITY, queue, count);
    });
  }
  return rows.map((row) => ({
    row,
    availableAt: row.now,
    ref: { queue: row.queue, runId: row.runId, seq: row.seq, leaseId: row.leaseId!, lockVersion: row.lockVersion, attempt: row.attempt },
  }));
}

/** How many of a completion's new tasks on each queue still need a poll (were not handed out eagerly). */
export function queuedCounts(activities: ReadonlyArray<{ queue: string }>, eager: readonly EagerActivityRow[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const a of activities) counts.set(a.queue, (counts.get(a.queue) ?? 0) + 1);
  for (const row of eager) counts.set(row.queue, counts.get(row.queue)! - 1);
  return counts;
}

/**
 * Eager workflow start (docs/worker-protocol.md "Eager workflow start"): a
 * start that names a workflow worker of the caller's process gets the new
 * run's first workflow task back in its answer, leased to that worker, which
 * saves the worker's poll (the wake, the claim round trip, and the poll's
 * re-arm).
 *
 * WHY RIGHT AFTER THE START'S COMMIT, NOT INSIDE ITS TRANSACTION: a plain start
 * is written by the group commit as ONE autocommit statement shared by up to
 * 256 starts (start-batch.ts); leasing inside it would make every start of
 * the batch wait for this one's lease, and on a capped queue the lease takes
 * the queue's row lock (claim_limit, store/workflow-tasks.ts CLAIM_BUDGET), so
 * a batch would also queue behind that queue's claims while holding its new
 * rows. After the commit the lease is the claim statement itself
 * (claimWorkflowTasks with `runId`: one SQL path for every workflow-task
 * lease), one more autocommit statement: it locks the new task row FOR NO KEY
 * UPDATE SKIP LOCKED (a poll holding it wins and we lease nothing), takes the
 * queue row only on a capped queue, and moves the run CREATED -> RUNNING as
 * any claim does; no run row lock is waited for. Measured cost: that one
 * statement on the eager start's answer (docs/decisions/0013-eager-workflow-start.md).
 *
 * Polls are not woken for an eager run until its lease was tried
 * (StartingRun.wakeDeferred), so a poll parked on this server does not race
 * it; a poll that takes the task anyway (another server's, or this one's
 * fallback tick) only leaves the answer empty. A lease that got nothing wakes
 * the polls then. The leased task is an ordinary task: its token fences it,
 * its lease runs out like a polled one's, and its completion makes the run
 * sticky to the worker (decision 0009).
 */
import type { Engine } from "./context.js";
import { QueueType } from "./model.js";
import { announceStarts, type StartingRun } from "./start-batch.js";
import { claimWithHistory, type PolledWorkflowTask } from "./workflow-tasks.js";

/**
 * Leases a just-started run's first task to `workerId`; undefined when it could not (queue paused
 * or full, a poll took it, the run waits for its concurrency slot, or the statement failed: the
 * start itself stands, and its task waits for a poll).
 */
export async function leaseEagerStart(engine: Engine, run: StartingRun, workerId: string): Promise<PolledWorkflowTask | undefined> {
  let task: PolledWorkflowTask | undefined;
  try {
    [task] = await claimWithHistory(engine, { queue: run.taskQueue, maxTasks: 1, workerId, runId: run.id });
  } catch (err) {
    engine.logger.warn("eager workflow start: could not lease the new run's task; it waits for a poll", { err, runId: run.id, workflow: run.workflowName });
  }
  if (task) {
    engine.observer.dispatchedEagerly(QueueType.WORKFLOW, run.taskQueue, 1);
    return task;
  }
  if (run.wakeDeferred) announceStarts(engine, [{ ...run, wakeDeferred: false }]);
  return undefined;
}

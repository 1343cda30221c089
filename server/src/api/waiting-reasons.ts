/**
 * DescribeRun's waiting reasons: why a run, or one of its activities, is not
 * running, in words a user can act on. Built from what describe read: the
 * pending tasks, the state of their queues (paused, at capacity, last poll,
 * cluster-wide) and, for a CREATED run without a workflow task, the runs
 * holding its concurrency key.
 */
import { decodeFailure } from "../engine/events.js";
import { isTerminal, WORKFLOW_TASK_DEADLOCK, type RunStatus } from "../engine/model.js";
import { activityRunning, NO_POLL_THRESHOLD_MS, workflowTaskRunning, type QueueView, type RunDescription } from "../engine/runs.js";
import type { PendingActivityRecord } from "../store/pending.js";

/**
 * Why a queue hands its waiting tasks to nobody, if the queue says so: the
 * first of paused, at capacity, no recent poll. Undefined: the queue would
 * hand the task out; a worker simply has not taken it yet.
 */
export function queueBlocker(queue: QueueView | undefined): string | undefined {
  if (!queue) return undefined;
  const what = `${queue.type} task queue "${queue.name}"`;
  if (queue.status === "paused") return `${what} is paused; its tasks are handed out again once it is resumed`;
  if (queue.capacity > 0 && queue.inFlight >= queue.capacity) {
    return `${what} is at capacity (${queue.inFlight} of ${queue.capacity} tasks leased)`;
  }
  if (queue.unpolled) {
    return (
      `no worker has polled ${what} in the last ${NO_POLL_THRESHOLD_MS / 1000} s` +
      (queue.lastPolledAt ? ` (last poll at ${queue.lastPolledAt.toISOString()})` : "; start a worker for it")
    );
  }
  return undefined;
}

function findQueue(queues: QueueView[], type: "workflow" | "activity", name: string): QueueView | undefined {
  return queues.find((q) => q.type === type && q.name === name);
}

/** One activity's reason, empty while it runs: backing off, then what its queue says. */
export function activityWaitingReason(task: PendingActivityRecord, queues: QueueView[]): string {
  if (activityRunning(task)) return "";
  const blocker = queueBlocker(findQueue(queues, "activity", task.queueName));
  if (task.visibleAt > task.now) {
    const backoff = `backing off after attempt ${task.attempt} failed; next attempt at ${task.visibleAt.toISOString()}`;
    return blocker ? `${backoff}; ${blocker}` : backoff;
  }
  return blocker ?? `waiting for a worker polling activity task queue "${task.queueName}"`;
}

/**
 * Why an open run is not making progress, in words: the first of a
 * concurrency key wait, a workflow task waiting for a worker or backing off,
 * activities, event waits, timers and child runs that applies; prefixed by a
 * pending cancellation request.
 */
export function waitingReason(d: RunDescription): string {
  const { run } = d;
  if (isTerminal(run.status as RunStatus)) return "";
  const parts: string[] = [];
  if (run.cancelRequestedAt) {
    parts.push(
      `cancellation requested at ${run.cancelRequestedAt.toISOString()}${run.cancelReason ? ` (${run.cancelReason})` : ""}; the workflow has not ended yet`,
    );
  }
  const progress = progressReason(d);
  if (progress) parts.push(progress);
  return parts.join("; ");
}

function progressReason(d: RunDescription): string {
  const { workflowTask: task, activities, keyWait } = d;
  if (keyWait) {
    const { runIds, count } = keyWait.holders;
    const held =
      count === 0
        ? "no run holds it now; the run starts when a slot is handed to it"
        : `held by run${count === 1 ? "" : "s"} ${runIds.join(", ")}${count > runIds.length ? ` and ${count - runIds.length} more` : ""}`;
    return `waiting for concurrency key "${keyWait.key}" (limit ${keyWait.limit}, ${held})`;
  }
  if (task) {
    if (workflowTaskRunning(task)) return "";
    const blocker = queueBlocker(findQueue(d.queues, "workflow", d.run.taskQueue));
    if (task.visibleAt > task.now) {
      const backoff =
        decodeFailure(task.lastFailure)?.type === WORKFLOW_TASK_DEADLOCK
          ? `workflow task attempt ${task.attempt} failed: its workflow code did not yield, so its worker process was stopped; ` +
            `retrying at ${task.visibleAt.toISOString()} (longer back-off after a deadlock, so workers are not stopped in a loop; ` +
            `deploy fixed code or terminate the run)`
          : `workflow task attempt ${task.attempt} failed; retrying at ${task.visibleAt.toISOString()}`;
      return blocker ? `${backoff}; ${blocker}` : backoff;
    }
    return blocker ?? `waiting for a workflow worker polling task queue "${d.run.taskQueue}"`;
  }
  const waits: string[] = [];
  if (activities.length > 0) {
    const blockers = [
      ...new Set(activities.filter((a) => !activityRunning(a)).map((a) => queueBlocker(findQueue(d.queues, "activity", a.queueName)))),
    ].filter((b): b is string => b !== undefined);
    const count = `${activities.length} activit${activities.length === 1 ? "y" : "ies"}`;
    waits.push(blockers.length > 0 ? `${count} (${blockers.join("; ")})` : count);
  }
  if (d.eventWaits.length > 0) waits.push(`event${d.eventWaits.length === 1 ? "" : "s"} ${d.eventWaits.map((w) => `"${w.eventName}"`).join(", ")}`);
  if (d.timers.length > 0) {
    const next = d.timers.reduce((a, b) => (b.fireAt < a.fireAt ? b : a));
    waits.push(`${d.timers.length} timer${d.timers.length === 1 ? "" : "s"} (next fires at ${next.fireAt.toISOString()})`);
  }
  if (d.children.length > 0) waits.push(`${d.children.length} child run${d.children.length === 1 ? "" : "s"}`);
  return waits.length > 0 ? `waiting for ${waits.join(", ")}` : "";
}

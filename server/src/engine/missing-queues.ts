/**
 * What a workflow's commands get when they name a task queue that does not
 * exist (dex queues are created by an administrator, never on first use):
 *
 * - schedule_activity: the call is recorded (`activity_scheduled`) but gets no
 *   task; `activity_failed{attempt: 0}` (no attempt ran) with a non-retryable
 *   SERVER failure of type TaskQueueNotFound goes to the run's inbox in the
 *   same transaction, and the run gets its next workflow task: the workflow
 *   catches it as any activity failure;
 * - start_child_run: `child_run_start_failed` of type TaskQueueNotFound
 *   (engine/relatives.ts startChildren), as for an instance-id conflict;
 * - continue_as_new: the completion is refused, nothing written
 *   (FAILED_PRECONDITION): the worker fails the workflow task, the run stays
 *   open, and the task is retried with back-off until the queue exists.
 *   Ending the run instead would break the continue-as-new chain over what an
 *   administrator fixes with one command; Temporal's run likewise waits for
 *   workers on its new queue.
 */
import { create } from "@bufbuild/protobuf";
import { DexError, FailureKind, FailureSchema, type Failure } from "@dex/proto";
import type { NewInboxEvent } from "../store/completion.js";
import type { PlannedActivity } from "./commands.js";
import { activityResultDedupKey, encodeEvent } from "./events.js";
import { QueueType } from "./model.js";

export const TASK_QUEUE_NOT_FOUND = "TaskQueueNotFound";

/** The failure a workflow receives for a call on a queue that does not exist. */
export function taskQueueNotFound(type: QueueType, queue: string): Failure {
  return create(FailureSchema, {
    message: `${type} task queue "${queue}" does not exist; create it with \`dex queue create ${queue} --type ${type}\``,
    type: TASK_QUEUE_NOT_FOUND,
    nonRetryable: true,
    kind: FailureKind.SERVER,
  });
}

/**
 * The inbox rows of activity calls whose queue does not exist: each call's
 * outcome, with the dedup key every activity outcome has (`activity-result:<seq>`).
 * attempt 0: no attempt ran.
 */
export function unscheduledActivityOutcomes(activities: readonly PlannedActivity[]): NewInboxEvent[] {
  return activities.map((activity) => {
    const { kind, event } = encodeEvent({
      case: "activityFailed",
      value: { seq: activity.seq, failure: taskQueueNotFound(QueueType.ACTIVITY, activity.queue), attempt: 0 },
    });
    return { kind, event, dedupKey: activityResultDedupKey(activity.seq) };
  });
}

/** continue_as_new to a workflow queue that does not exist: the completion is refused (see above). */
export function continueAsNewQueueMissing(queue: string): DexError {
  return new DexError(
    "FAILED_PRECONDITION",
    `continue_as_new: workflow task queue "${queue}" does not exist, so the run cannot continue on it; nothing was ` +
      `written and the run stays open: create the queue (\`dex queue create ${queue} --type workflow\`) and the next ` +
      `attempt of this workflow task continues the run, or deploy workflow code that continues on an existing queue`,
  );
}

/**
 * Cancelling a run whose workflow task keeps failing (a bug, a determinism
 * violation, non-determinism). Delivering `cancel_requested` needs the code
 * to run, and this code fails before it can react, so the request alone would
 * never end the run (Temporal leaves such a run to terminate). Here the
 * worker that fails such a task completes it instead with `cancel_run`: the
 * user asked for the run to stop and its code cannot run, so stopping it
 * without the code's cleanup is the only way the request can be honoured.
 * The completion goes through the server's usual checks (ABORTED if new
 * events arrived meanwhile: the next attempt decides again). Decision 0014.
 */
import { create } from "@bufbuild/protobuf";
import { CommandSchema, DexError, type HistoryEvent, type WorkflowTask } from "@dex/proto";
import type { Connection } from "../client/connection.js";
import { withRetry } from "../client/retry.js";
import type { Logger } from "../common/logger.js";
import { encodePayload } from "../common/payload.js";
import type { WorkflowExecution } from "../workflow/execution.js";

/** True when the run's cancellation was requested: in the task's new events, in its history, or seen by the cached code. */
export function cancellationRequested(
  task: WorkflowTask,
  history: readonly HistoryEvent[] | undefined,
  execution: WorkflowExecution | undefined,
): boolean {
  const isCancel = (event: HistoryEvent) => event.attributes.case === "cancelRequested";
  return task.newEvents.some(isCancel) || (history ?? task.history).some(isCancel) || (execution?.ctx.cancellationRequested ?? false);
}

/**
 * Ends the run CANCELLED with the code's error in the details (describe and `dex workflow result` show it).
 * `until`: the task's lease deadline, the last moment a retry of the completion can land.
 * `metadata`: the completion hooks' headers (tracing's traceparent), undefined when none.
 */
export async function cancelFailingRun(
  task: WorkflowTask,
  err: unknown,
  connection: Connection,
  log: Logger,
  until: number,
  metadata?: Record<string, string>,
): Promise<void> {
  const message = err instanceof Error ? err.message : String(err);
  const details = encodePayload({ reason: "cancellation requested while the workflow task was failing", taskFailure: message });
  const cancel = create(CommandSchema, { command: { case: "cancelRun", value: { details } } });
  log.warn(`workflow task failed while the run's cancellation was requested; ending the run CANCELLED without running its code: ${message}`);
  try {
    await withRetry(() => connection.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [cancel] }, metadata && { metadata }), {
      until,
      pause: connection.pause,
    });
  } catch (cancelErr) {
    // ABORTED: events arrived; the task comes again with them. NOT_FOUND: no longer ours. Either way, nothing to add.
    log.warn(`could not end the run cancelled (the next attempt tries again): ${DexError.from(cancelErr).message}`);
  }
}

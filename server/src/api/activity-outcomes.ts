/**
 * CompleteActivityTask and FailActivityTask, checked and recorded: one
 * definition for the unary calls (api/worker-service.ts) and each item of
 * ReportActivityTasks (api/activity-reports.ts), so an item is checked,
 * answered and worded exactly as its unary call.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type {
  CompleteActivityTaskRequest,
  CompleteActivityTaskResponseSchema,
  FailActivityTaskRequest,
  FailActivityTaskResponseSchema,
} from "@dex/proto";
import { completeActivityTask, failActivityTask } from "../engine/activity-tasks.js";
import type { Engine } from "../engine/context.js";
import { QueueType } from "../engine/model.js";
import { taskLeaseEnded } from "../engine/task-queues.js";
import { durationField, payloadField, requireFailure } from "../engine/validation.js";
import { decodeActivityTaskToken } from "./task-token.js";

/** A request that passed its checks: the queue its token names, and what records it. */
export interface CheckedOutcome<R> {
  queue: string;
  record(): Promise<R>;
}

/** Checks a CompleteActivityTask request (INVALID_ARGUMENT before anything is written). */
export function checkCompletion(
  engine: Engine,
  req: CompleteActivityTaskRequest,
): CheckedOutcome<MessageInitShape<typeof CompleteActivityTaskResponseSchema>> {
  const ref = decodeActivityTaskToken(req.taskToken);
  const result = payloadField("result", req.result, engine.limits);
  return {
    queue: ref.queue,
    async record() {
      await completeActivityTask(engine, ref, result);
      taskLeaseEnded(engine, QueueType.ACTIVITY, ref.queue);
      return {};
    },
  };
}

/** Checks a FailActivityTask request (INVALID_ARGUMENT before anything is written). */
export function checkFailure(
  engine: Engine,
  req: FailActivityTaskRequest,
): CheckedOutcome<MessageInitShape<typeof FailActivityTaskResponseSchema>> {
  const ref = decodeActivityTaskToken(req.taskToken);
  const failure = requireFailure(req.failure, engine.limits);
  const delayMs = durationField("next_retry_delay", req.nextRetryDelay, { allowZero: true });
  return {
    queue: ref.queue,
    async record() {
      const outcome = await failActivityTask(engine, ref, failure, delayMs);
      taskLeaseEnded(engine, QueueType.ACTIVITY, ref.queue);
      return outcome.willRetry ? { willRetry: true, nextAttemptTime: timestampFromDate(outcome.nextAttemptAt) } : { willRetry: false };
    },
  };
}

/**
 * schedule_activity: validation and the documented defaults (queue, retry
 * policy, timeouts, priority). Pure.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { ActivityScheduledAttributesSchema, type ActivityScheduledAttributes, type Command } from "@dex/proto";
import type { NewActivityTask } from "../store/completion.js";
import { encodePayload } from "./events.js";
import { DEFAULT_START_TO_CLOSE_MS } from "./model.js";
import { resolveRetryPolicy } from "./retry.js";
import type { Limits } from "./limits.js";
import { durationField, intInRange, invalid, payloadField, queueName, requireString } from "./validation.js";

/** What the store writes for one schedule_activity command. */
export type PlannedActivity = NewActivityTask;

export function planActivity(
  field: string,
  command: Extract<Command["command"], { case: "scheduleActivity" }>["value"],
  run: { taskQueue: string; priority: number; limits: Limits },
): { task: PlannedActivity; attributes: ActivityScheduledAttributes } {
  const activityName = requireString(`${field}.activity_name`, command.activityName);
  const queue = queueName(`${field}.task_queue`, command.taskQueue, run.taskQueue);
  payloadField(`${field}.input`, command.input, run.limits);
  const policy = command.retryPolicy;
  if (policy) {
    durationField(`${field}.retry_policy.initial_interval`, policy.initialInterval);
    const maxMs = durationField(`${field}.retry_policy.maximum_interval`, policy.maximumInterval);
    const initialMs = durationField(`${field}.retry_policy.initial_interval`, policy.initialInterval);
    if (policy.backoffCoefficient !== 0 && !(policy.backoffCoefficient >= 1 && policy.backoffCoefficient <= 1000)) {
      throw invalid(`${field}.retry_policy.backoff_coefficient must be from 1 to 1000 (or 0 for the default 2), got ${policy.backoffCoefficient}`);
    }
    if (maxMs !== undefined && initialMs !== undefined && maxMs < initialMs) {
      throw invalid(`${field}.retry_policy.maximum_interval must not be shorter than initial_interval`);
    }
    if (policy.maximumAttempts < 0) throw invalid(`${field}.retry_policy.maximum_attempts must not be negative`);
    policy.nonRetryableErrorTypes.forEach((type, i) =>
      requireString(`${field}.retry_policy.non_retryable_error_types[${i}]`, type),
    );
  }
  const startToCloseMs = durationField(`${field}.start_to_close_timeout`, command.startToCloseTimeout) ?? DEFAULT_START_TO_CLOSE_MS;
  const scheduleToCloseMs = durationField(`${field}.schedule_to_close_timeout`, command.scheduleToCloseTimeout);
  const heartbeatMs = durationField(`${field}.heartbeat_timeout`, command.heartbeatTimeout);
  const priority =
    command.priority === undefined ? run.priority : intInRange(`${field}.priority`, command.priority, 0, 100);
  const attributes = create(ActivityScheduledAttributesSchema, {
    seq: command.seq,
    activityName,
    taskQueue: queue,
    input: command.input,
    retryPolicy: resolveRetryPolicy(policy),
    startToCloseTimeout: durationFromMs(startToCloseMs),
    scheduleToCloseTimeout: scheduleToCloseMs !== undefined ? durationFromMs(scheduleToCloseMs) : undefined,
    heartbeatTimeout: heartbeatMs !== undefined ? durationFromMs(heartbeatMs) : undefined,
    priority,
  });
  return {
    attributes,
    task: {
      queue,
      seq: command.seq,
      activityName,
      priority,
      input: encodePayload(command.input),
      options: toBinary(ActivityScheduledAttributesSchema, attributes),
      scheduleToCloseMs: scheduleToCloseMs ?? null,
      startToCloseMs,
      leaseMs: heartbeatMs ?? startToCloseMs,
    },
  };
}

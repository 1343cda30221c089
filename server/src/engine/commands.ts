/**
 * Workflow commands -> history events, activity tasks and the run's end.
 * Pure: validates everything before the completion writes anything, applies
 * the documented defaults, and returns what the store must write.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import {
  ActivityScheduledAttributesSchema,
  DexError,
  FailureKind,
  FailureSchema,
  type ActivityScheduledAttributes,
  type Command,
} from "@dex/proto";
import { encodeEvent, encodeFailure, encodePayload, type EncodedEvent } from "./events.js";
import { DEFAULT_START_TO_CLOSE_MS, MAX_COMMANDS_PER_TASK, RunStatus } from "./model.js";
import { resolveRetryPolicy } from "./retry.js";
import { durationField, intInRange, invalid, labelsField, optionalString, queueName, requireString } from "./validation.js";

export interface PlannedActivity {
  queue: string;
  seq: number;
  activityName: string;
  priority: number;
  input: Uint8Array | null;
  options: Uint8Array;
  scheduleToCloseMs: number | null;
  leaseMs: number;
}

export interface CommandPlan {
  /** Command events, one per command, in order. */
  events: EncodedEvent[];
  activities: PlannedActivity[];
  /** Set when a terminal command ends the run. */
  end?: { status: RunStatus; result: Uint8Array | null; failure: Uint8Array | null };
  /** undefined: unchanged; null: cleared. */
  customStatus?: string | null;
  labels?: Record<string, string>;
}

const TERMINAL_CASES = new Set(["completeRun", "failRun", "cancelRun", "continueAsNew"]);

/** Commands this version records; the others answer UNIMPLEMENTED. */
const LATER: Record<string, string> = {
  requestCancelActivity: "request_cancel_activity",
  startTimer: "start_timer",
  cancelTimer: "cancel_timer",
  waitForEvent: "wait_for_event",
  startChildRun: "start_child_run",
  continueAsNew: "continue_as_new",
};

/**
 * Validates the commands of one completion and turns them into writes.
 * `run` supplies the defaults (task queue, priority).
 */
export function planCommands(commands: Command[], run: { taskQueue: string; priority: number }): CommandPlan {
  if (commands.length > MAX_COMMANDS_PER_TASK) {
    throw invalid(`commands has ${commands.length} entries, at most ${MAX_COMMANDS_PER_TASK} per task`);
  }
  const plan: CommandPlan = { events: [], activities: [] };
  const seqs = new Set<number>();
  const claimSeq = (field: string, seq: number) => {
    if (!Number.isInteger(seq) || seq <= 0) throw invalid(`${field}.seq must be greater than 0`);
    if (seqs.has(seq)) throw invalid(`${field}.seq ${seq} is used by an earlier command of this task; each seq is unique within a run`);
    seqs.add(seq);
  };
  commands.forEach((command, index) => {
    const field = `commands[${index}]`;
    const { case: kind, value } = command.command;
    if (kind === undefined) throw invalid(`${field} has no command set`);
    if (TERMINAL_CASES.has(kind) && index !== commands.length - 1) {
      throw invalid(`${field} is a terminal command (${kind}) but is not the last command; a terminal command must be last`);
    }
    if (kind in LATER) {
      throw new DexError("UNIMPLEMENTED", `${field}: the ${LATER[kind]} command is not supported by this server version yet; it lands in a later version`);
    }
    switch (kind) {
      case "scheduleActivity": {
        claimSeq(`${field}.schedule_activity`, value.seq);
        const activity = planActivity(`${field}.schedule_activity`, value, run);
        plan.activities.push(activity.task);
        plan.events.push(encodeEvent({ case: "activityScheduled", value: activity.attributes }));
        break;
      }
      case "recordSideEffect":
        claimSeq(`${field}.record_side_effect`, value.seq);
        plan.events.push(encodeEvent({ case: "sideEffectRecorded", value: { seq: value.seq, value: value.value } }));
        break;
      case "setCustomStatus":
        optionalString(`${field}.set_custom_status.custom_status`, value.customStatus);
        plan.customStatus = value.customStatus === "" ? null : value.customStatus;
        plan.events.push(encodeEvent({ case: "customStatusSet", value: { customStatus: value.customStatus } }));
        break;
      case "upsertLabels":
        plan.labels = { ...plan.labels, ...labelsField(`${field}.upsert_labels.labels`, value.labels) };
        plan.events.push(encodeEvent({ case: "labelsUpserted", value: { labels: value.labels } }));
        break;
      case "completeRun":
        plan.end = { status: RunStatus.COMPLETED, result: encodePayload(value.result), failure: null };
        plan.events.push(encodeEvent({ case: "runCompleted", value: { result: value.result } }));
        break;
      case "failRun": {
        const failure = value.failure ?? create(FailureSchema, { message: "workflow failed without a failure" });
        plan.end = { status: RunStatus.FAILED, result: null, failure: encodeFailure(failure) };
        plan.events.push(encodeEvent({ case: "runFailed", value: { failure } }));
        break;
      }
      case "cancelRun": {
        const failure = create(FailureSchema, {
          message: "run cancelled",
          type: "CancelledError",
          kind: FailureKind.CANCELLED,
          details: value.details,
        });
        plan.end = { status: RunStatus.CANCELLED, result: null, failure: encodeFailure(failure) };
        plan.events.push(encodeEvent({ case: "runCancelled", value: { details: value.details } }));
        break;
      }
    }
  });
  return plan;
}

function planActivity(
  field: string,
  command: Extract<Command["command"], { case: "scheduleActivity" }>["value"],
  run: { taskQueue: string; priority: number },
): { task: PlannedActivity; attributes: ActivityScheduledAttributes } {
  const activityName = requireString(`${field}.activity_name`, command.activityName);
  const queue = queueName(`${field}.task_queue`, command.taskQueue, run.taskQueue);
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
      leaseMs: heartbeatMs ?? startToCloseMs,
    },
  };
}

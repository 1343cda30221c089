/**
 * Builds the commands workflow calls turn into. Validation happens here, in
 * the caller's await, so a bad argument rejects that call with a TypeError
 * instead of failing the task.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { CommandSchema, ParentClosePolicy, RetryPolicySchema, type Command, type RetryPolicy } from "@dex/proto";
import { parseDuration, toProtoDuration, type Duration } from "../common/duration.js";
import { encodePayload } from "../common/payload.js";
import type { ActivityOptions, ChildOptions, ContinueAsNewOptions, Workflow } from "./types.js";

export function buildScheduleActivity(seq: number, activityName: string, input: unknown, options: ActivityOptions): Command {
  if (typeof activityName !== "string" || activityName.length === 0) throw new TypeError("activity name must be a non-empty string");
  const retry = options.retry;
  let retryPolicy: RetryPolicy | undefined;
  if (retry) {
    retryPolicy = create(RetryPolicySchema, {
      initialInterval: toProtoDuration(retry.initialInterval),
      backoffCoefficient: retry.backoffCoefficient ?? 0,
      maximumInterval: toProtoDuration(retry.maximumInterval),
      maximumAttempts: retry.maximumAttempts ?? 0,
      nonRetryableErrorTypes: retry.nonRetryableErrorTypes ?? [],
    });
  }
  return create(CommandSchema, {
    command: {
      case: "scheduleActivity",
      value: {
        seq,
        activityName,
        taskQueue: options.taskQueue ?? "",
        input: encodePayload(input),
        retryPolicy,
        startToCloseTimeout: toProtoDuration(options.startToCloseTimeout),
        scheduleToCloseTimeout: toProtoDuration(options.scheduleToCloseTimeout),
        heartbeatTimeout: toProtoDuration(options.heartbeatTimeout),
        priority: options.priority,
      },
    },
  });
}

export function buildStartTimer(seq: number, when: { duration: Duration } | { time: Date }): Command {
  if ("time" in when) {
    const ms = when.time instanceof Date ? when.time.getTime() : Number.NaN;
    if (!Number.isFinite(ms)) throw new TypeError("ctx.sleepUntil expects a valid Date");
    return create(CommandSchema, { command: { case: "startTimer", value: { seq, fireTime: timestampFromMs(ms) } } });
  }
  parseDuration(when.duration);
  return create(CommandSchema, { command: { case: "startTimer", value: { seq, duration: toProtoDuration(when.duration) } } });
}

export function validateEventId(eventId: unknown): asserts eventId is string {
  if (typeof eventId !== "string" || eventId.length === 0 || eventId.length > 255) {
    throw new TypeError("ctx.waitForEvent: the event id must be a string of 1 to 255 characters");
  }
}

export function buildWaitForEvent(seq: number, eventId: string, timeout: Duration | undefined): Command {
  return create(CommandSchema, {
    command: { case: "waitForEvent", value: { seq, eventId, timeout: toProtoDuration(timeout) } },
  });
}

export function workflowNameOf(workflow: Workflow | string, what: string): string {
  const name = typeof workflow === "string" ? workflow : typeof workflow === "function" ? workflow.name : "";
  if (!name) throw new TypeError(`${what}: pass a named workflow function or its registered name`);
  return name;
}

export function buildStartChild(seq: number, workflowName: string, input: unknown, options: ChildOptions): Command {
  if (!options || typeof options.instanceId !== "string" || options.instanceId.length === 0) {
    throw new TypeError("ctx.child: options.instanceId is required (a non-empty string)");
  }
  const policy = options.parentClosePolicy ?? "cancel";
  if (policy !== "cancel" && policy !== "abandon") {
    throw new TypeError(`ctx.child: parentClosePolicy must be "cancel" or "abandon", got ${JSON.stringify(policy)}`);
  }
  return create(CommandSchema, {
    command: {
      case: "startChildRun",
      value: {
        seq,
        workflowName,
        instanceId: options.instanceId,
        taskQueue: options.taskQueue ?? "",
        input: encodePayload(input),
        labels: validLabels(options.labels ?? {}, "ctx.child"),
        priority: options.priority,
        parentClosePolicy: policy === "abandon" ? ParentClosePolicy.ABANDON : ParentClosePolicy.CANCEL,
      },
    },
  });
}

export function buildContinueAsNew(input: unknown, options: ContinueAsNewOptions = {}): Command {
  return create(CommandSchema, {
    command: {
      case: "continueAsNew",
      value: {
        input: encodePayload(input),
        workflowName: options.workflow === undefined ? "" : workflowNameOf(options.workflow, "ctx.continueAsNew"),
        taskQueue: options.taskQueue ?? "",
      },
    },
  });
}

export function buildSetStatus(text: string): Command {
  if (typeof text !== "string") throw new TypeError("ctx.setStatus expects a string");
  return create(CommandSchema, { command: { case: "setCustomStatus", value: { customStatus: text } } });
}

export function buildUpsertLabels(labels: Record<string, string>): Command {
  return create(CommandSchema, { command: { case: "upsertLabels", value: { labels: validLabels(labels, "ctx.upsertLabels") } } });
}

function validLabels(labels: Record<string, string>, what: string): Record<string, string> {
  if (typeof labels !== "object" || labels === null) throw new TypeError(`${what}: labels must be an object of strings`);
  for (const [key, value] of Object.entries(labels)) {
    if (typeof value !== "string") throw new TypeError(`${what}: label "${key}" must be a string, got ${typeof value}`);
  }
  return { ...labels };
}

/**
 * Builds the commands workflow calls turn into. Validation happens here, in
 * the caller's await, so a bad argument rejects that call with a TypeError
 * (a RangeError for a value out of the server's range) instead of failing
 * the task.
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

/**
 * How far from the workflow clock a timer may fire: the server's limit for
 * durations and fire times (MAX_DURATION_MS in server/src/engine/model.ts),
 * about ten years. Checked here so the call rejects instead of the server
 * refusing the task's commands on every retry.
 */
export const MAX_TIMER_MS = 10 * 365 * 24 * 3_600_000;

/** `now`: the workflow clock (the task time the server measures against). */
export function buildStartTimer(seq: number, when: { duration: Duration } | { time: Date }, now: number): Command {
  if ("time" in when) {
    const ms = when.time instanceof Date ? when.time.getTime() : Number.NaN;
    if (!Number.isFinite(ms)) throw new TypeError("ctx.sleepUntil expects a valid Date");
    if (Math.abs(ms - now) > MAX_TIMER_MS) {
      throw new RangeError(
        `ctx.sleepUntil: ${when.time.toISOString()} is more than 10 years from the workflow clock (${new Date(now).toISOString()}); ` +
          "pass a Date in milliseconds (new Date(seconds * 1000) for a Unix time in seconds)",
      );
    }
    return create(CommandSchema, { command: { case: "startTimer", value: { seq, fireTime: timestampFromMs(ms) } } });
  }
  if (parseDuration(when.duration) > MAX_TIMER_MS) {
    throw new RangeError(`ctx.sleep: ${String(when.duration)} is longer than 10 years, the longest timer the server accepts`);
  }
  return create(CommandSchema, { command: { case: "startTimer", value: { seq, duration: toProtoDuration(when.duration) } } });
}

export function validateEventName(name: unknown, what = "ctx.waitForEvent"): asserts name is string {
  if (typeof name !== "string" || name.length === 0 || name.length > 255) {
    throw new TypeError(`${what}: the event name must be a string of 1 to 255 characters`);
  }
}

/**
 * `timeout` undefined: wait forever. 0 (or "0s"): time out at once unless an
 * unconsumed event of the name was already received (then no command is issued at all); the zero
 * duration is sent as a set field, which the server reads as "time out now".
 */
export function buildWaitForEvent(seq: number, eventName: string, timeout: Duration | undefined): Command {
  if (timeout !== undefined && parseDuration(timeout) > MAX_TIMER_MS) {
    throw new RangeError(`ctx.waitForEvent: timeout ${String(timeout)} is longer than 10 years, the longest the server accepts`);
  }
  return create(CommandSchema, {
    // event_id repeats the name for servers and readers from before names existed.
    command: { case: "waitForEvent", value: { seq, eventId: eventName, eventName, timeout: toProtoDuration(timeout) } },
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
        runTimeout: toProtoDuration(options.runTimeout),
        workflowTaskTimeout: toProtoDuration(options.workflowTaskTimeout),
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

/**
 * The WorkflowContext handed to workflow code. It only reads and writes the
 * execution through the narrow callbacks below, so every value it returns is
 * a function of the history being replayed.
 */
import { create } from "@bufbuild/protobuf";
import { CommandSchema, RetryPolicySchema, type Command, type RetryPolicy } from "@dex/proto";
import { toProtoDuration } from "../common/duration.js";
import type { Logger, LogLevel } from "../common/logger.js";
import { encodePayload } from "../common/payload.js";
import { uuidFrom } from "./prng.js";
import type { Activity, ActivityOptions, ActivityProxy, WorkflowContext, WorkflowInfo } from "./types.js";

export interface ContextDeps {
  info(): WorkflowInfo;
  isReplaying(): boolean;
  now(): number;
  random(): number;
  nextSeq(): number;
  scheduleActivity(name: string, command: Command): Promise<unknown>;
  logger: Logger;
}

export function createWorkflowContext(deps: ContextDeps): WorkflowContext {
  const executeActivity = <O>(name: string, input?: unknown, options: ActivityOptions = {}): Promise<O> => {
    let command: Command;
    try {
      if (typeof name !== "string" || name.length === 0) throw new TypeError("activity name must be a non-empty string");
      command = buildScheduleActivity(deps.nextSeq(), name, input, options);
    } catch (err) {
      return Promise.reject(err);
    }
    return deps.scheduleActivity(name, command) as Promise<O>;
  };

  const log = replayAwareLogger(deps);

  return {
    get info() {
      return deps.info();
    },
    get isReplaying() {
      return deps.isReplaying();
    },
    log,
    activities<A extends Record<string, Activity>>(options?: ActivityOptions): ActivityProxy<A> {
      return new Proxy({} as ActivityProxy<A>, {
        get(_target, property) {
          // Not a thenable, so `await ctx.activities()` does not try to call an activity named "then".
          if (typeof property !== "string" || property === "then") return undefined;
          return (input?: unknown) => executeActivity(property, input, options);
        },
      });
    },
    executeActivity,
    now: () => new Date(deps.now()),
    random: () => deps.random(),
    uuid: () => uuidFrom(deps.random),
  };
}

function buildScheduleActivity(seq: number, activityName: string, input: unknown, options: ActivityOptions): Command {
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

function replayAwareLogger(deps: ContextDeps): Logger {
  const entry =
    (level: LogLevel) =>
    (message: string, fields?: Record<string, unknown>): void => {
      if (deps.isReplaying()) return;
      const info = deps.info();
      deps.logger[level](message, { runId: info.runId, workflowName: info.workflowName, ...fields });
    };
  return { debug: entry("debug"), info: entry("info"), warn: entry("warn"), error: entry("error") };
}

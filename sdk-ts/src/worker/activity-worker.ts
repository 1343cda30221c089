/** The activity worker: polls one activity queue and runs attempts of registered activities. */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { ActivityTask } from "@dex/proto";
import { DexError } from "@dex/proto";
import { ApplicationFailure, CancelledFailure } from "../common/errors.js";
import { errorToFailure } from "../common/failure.js";
import { parseDuration, type Duration } from "../common/duration.js";
import { createConsoleLogger, type Logger } from "../common/logger.js";
import { decodePayload, encodePayload, PayloadError } from "../common/payload.js";
import { connect, type Connection } from "../client/connection.js";
import { resolveConnection, type ConnectionOptions } from "../client/environment.js";
import { withRetry } from "../client/retry.js";
import type { Activity } from "../workflow/types.js";
import { createActivityReporter, type ActivityReporter } from "./activity-reporter.js";
import { ActivityAttempt, activityLogFields, autoHeartbeatMs, leaseDeadlineOf, type AttemptEnd, type AttemptOptions } from "./activity-attempt.js";
import { eagerHoldBack, registerActivityWorker, type EagerActivityTarget } from "./eager-activities.js";
import { createPollingWorker, defaultIdentity, type PollingWorker, type Worker } from "./worker.js";
import { positive } from "./workflow-worker.js";
import { intercept, interceptCompletion, workerHooks, type ActivityAttemptInfo, type ReportHeaders, type WorkerHooks, type WorkerInterceptor } from "./interceptors.js";

/** `address`, `tls` and `apiKey` (see ConnectionOptions) fall back to DEX_ADDRESS, DEX_TLS_* and DEX_API_KEY. */
export interface ActivityWorkerOptions extends ConnectionOptions {
  /** The activity task queue to poll. Required. */
  taskQueue: string;
  /** Activities by registered name (the name workflows call them by). */
  activities: Record<string, Activity>;
  /** Attempts run at once. Default 10. */
  maxConcurrentActivities?: number;
  /** Worker id sent to the server. Default host:pid:random. */
  identity?: string;
  /**
   * Heartbeats the worker sends on an activity's behalf while an attempt runs, so a long activity
   * keeps its lease and learns of a cancellation (its `ctx.signal` aborts) without calling
   * `ctx.heartbeat()`. `true` (the default): every half lease (the heartbeat timeout, else the
   * start-to-close timeout) and at least every 30 s. `{ interval }`: at least that often (and still every
   * half lease). `false`: only `ctx.heartbeat()` heartbeats, so an activity that hangs without
   * heartbeating is timed out by its heartbeat timeout and retried.
   */
  autoHeartbeat?: boolean | { interval: Duration };
  /** Default: console, info and above. */
  logger?: Logger;
  /** Hooks around each activity attempt and its report (e.g. `@dex/opentelemetry`'s tracing); first is outermost. Default none. */
  interceptors?: WorkerInterceptor[];
}

export function createActivityWorker(options: ActivityWorkerOptions): Worker {
  if (!options.taskQueue) throw new TypeError("createActivityWorker: taskQueue is required");
  const names = Object.keys(options.activities ?? {});
  if (names.length === 0) throw new TypeError("createActivityWorker: register at least one activity in `activities`");
  for (const name of names) {
    if (typeof options.activities[name] !== "function") throw new TypeError(`createActivityWorker: activity "${name}" is not a function`);
  }
  const maxConcurrent = positive(options.maxConcurrentActivities ?? 10, "maxConcurrentActivities");
  const auto = options.autoHeartbeat;
  const attemptOptions: AttemptOptions = {
    autoHeartbeatMs: autoHeartbeatMs(typeof auto === "object" ? { interval: parseDuration(auto.interval) } : auto),
  };
  const connection = connect(resolveConnection(options));
  const workerId = options.identity ?? defaultIdentity();
  const logger = options.logger ?? createConsoleLogger({ prefix: "[dex]" });
  const activities = { ...options.activities };
  // Completions and failures go out in batches (ReportActivityTasks); heartbeats stay unary.
  const reporter = createActivityReporter(connection, logger);
  const hooks = workerHooks(options.interceptors);

  const worker = createPollingWorker<ActivityTask>({
    kind: "activity",
    address: connection.address,
    taskQueue: options.taskQueue,
    maxConcurrent,
    logger,
    async poll(maxTasks, signal, waitMs) {
      const response = await connection.worker.pollActivityTasks(
        { taskQueue: options.taskQueue, maxTasks, workerId, maxWait: durationFromMs(waitMs) },
        { signal, deadline: waitMs + 10_000 },
      );
      return response.tasks;
    },
    handle: (task) => runAttempt(task, { connection, reporter, activities, taskQueue: options.taskQueue, logger, attemptOptions, hooks }),
    holdBack: (free) => eagerHoldBack(connection.address, free),
    pause: connection.pause,
    close: () => connection.close(),
  });
  // While it runs, a workflow worker of this process may hand it tasks (eager-activities.ts).
  let unregister: (() => void) | undefined;
  const start = worker.start.bind(worker);
  const shutdown = worker.shutdown.bind(worker);
  worker.start = () => {
    start();
    unregister ??= registerActivityWorker({ address: connection.address, taskQueue: options.taskQueue, workerId, ...slotsOf(worker) });
  };
  worker.shutdown = async () => {
    unregister?.();
    await shutdown();
  };
  void worker.done.then(() => unregister?.());
  return worker;
}

function slotsOf(worker: PollingWorker<ActivityTask>): Pick<EagerActivityTarget, "reserve" | "release" | "accept"> {
  return { reserve: (n) => worker.reserve(n), release: (n) => worker.release(n), accept: (tasks) => worker.accept(tasks) };
}

interface AttemptDeps {
  connection: Connection;
  reporter: ActivityReporter;
  activities: Record<string, Activity>;
  taskQueue: string;
  logger: Logger;
  attemptOptions: AttemptOptions;
  hooks: WorkerHooks;
}

/** The interceptors' view of each attempt being run, for its report's hooks. */
const attemptInfos = new WeakMap<ActivityTask, ActivityAttemptInfo>();

async function runAttempt(task: ActivityTask, deps: AttemptDeps): Promise<void> {
  // Without interceptors (the default) nothing is allocated for them.
  if (deps.hooks.activityAttempt.length + deps.hooks.completion.length === 0) return runAttemptItself(task, deps);
  const info: ActivityAttemptInfo = {
    runId: task.runId,
    instanceId: task.instanceId,
    workflowName: task.workflowName,
    activityName: task.activityName,
    seq: task.seq,
    taskQueue: task.taskQueue,
    attempt: task.attempt,
    traceContext: task.traceContext,
  };
  attemptInfos.set(task, info);
  return intercept(deps.hooks.activityAttempt, info, () => runAttemptItself(task, deps));
}

/** Sends an outcome through the completion hooks, if any, with the headers they give (tracing's traceparent). */
function reporting(task: ActivityTask, deps: AttemptDeps, outcome: "completed" | "failed", send: (headers: ReportHeaders) => Promise<void>): Promise<void> {
  const info = attemptInfos.get(task);
  if (!info) return send(undefined);
  return interceptCompletion(deps.hooks.completion, { kind: "activityAttempt", outcome, task: info }, send);
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown } | { ended: AttemptEnd };

async function runAttemptItself(task: ActivityTask, deps: AttemptDeps): Promise<void> {
  const fn = Object.hasOwn(deps.activities, task.activityName) ? deps.activities[task.activityName] : undefined;
  if (!fn) {
    const known = Object.keys(deps.activities).join(", ");
    const error = ApplicationFailure.nonRetryable(
      `activity "${task.activityName}" is not registered on the worker polling activity queue "${deps.taskQueue}" ` +
        `(registered: ${known}). Register it in createActivityWorker({ activities }) or schedule it on another queue.`,
      "ActivityNotRegistered",
    );
    logFailure(task, deps.logger, error);
    await report(task, deps, { ok: false, error }, leaseDeadlineOf(task));
    return;
  }
  const attempt = new ActivityAttempt(task, deps.connection, deps.logger, deps.attemptOptions);
  let outcome: Outcome;
  try {
    const input = decodeInput(task);
    outcome = await Promise.race([
      Promise.resolve()
        .then(() => fn(input, attempt))
        .then(
          (value): Outcome => ({ ok: true, value }),
          (error: unknown): Outcome => ({ ok: false, error }),
        ),
      attempt.ended.then((ended): Outcome => ({ ended })),
    ]);
    // The last details go out even when the attempt failed or timed out: the next attempt resumes from them.
    if (!("ended" in outcome && outcome.ended.kind === "lost")) await attempt.flush();
  } catch (error) {
    outcome = { ok: false, error };
  } finally {
    attempt.close();
  }
  if ("ended" in outcome) {
    if (outcome.ended.kind === "lost") {
      attempt.log.warn(`${outcome.ended.error.message}; the result of this attempt is dropped`);
      return;
    }
    outcome = { ok: false, error: outcome.ended.error };
  }
  if (!outcome.ok) logFailure(task, deps.logger, outcome.error);
  await report(task, deps, outcome, attempt.leaseDeadline);
}

/**
 * One line per failed attempt, naming the run, activity, attempt and why: the workflow only sees
 * the last failure (after retries), so the attempts before it are visible here or nowhere. WARN,
 * not ERROR: activities are expected to fail and be retried. A cancellation is not a failure of
 * the activity: INFO.
 */
function logFailure(task: ActivityTask, logger: Logger, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  const fields = { ...activityLogFields(task), error: message };
  const what = `activity "${task.activityName}" attempt ${task.attempt} of run ${task.runId}`;
  if (error instanceof CancelledFailure) {
    logger.info(`${what} was cancelled: ${message}`, fields);
    return;
  }
  const final = error instanceof ApplicationFailure && error.nonRetryable ? " (non-retryable)" : "";
  logger.warn(`${what} failed${final}: ${message}`, fields);
}

function decodeInput(task: ActivityTask): unknown {
  try {
    return decodePayload(task.input);
  } catch (err) {
    // A payload this worker cannot read will not become readable on a retry.
    throw ApplicationFailure.nonRetryable(`cannot decode the activity input: ${(err as Error).message}`, "PayloadError");
  }
}

/**
 * Reports the outcome, retrying through a server outage for as long as the
 * lease lasts: after that the token is stale and the attempt runs again anyway.
 */
async function report(
  task: ActivityTask,
  deps: AttemptDeps,
  outcome: { ok: true; value: unknown } | { ok: false; error: unknown },
  until: number,
): Promise<void> {
  try {
    if (outcome.ok) {
      let result;
      try {
        result = encodePayload(outcome.value);
      } catch (err) {
        const reason = err instanceof PayloadError ? err.message : String(err);
        const error = ApplicationFailure.nonRetryable(`cannot encode the activity result: ${reason}`, "PayloadError");
        await report(task, deps, { ok: false, error }, until);
        return;
      }
      try {
        await reporting(task, deps, "completed", (headers) =>
          withRetry(() => deps.reporter.complete({ taskToken: task.taskToken, result }, headers), { until, pause: deps.connection.pause }),
        );
      } catch (err) {
        const refused = DexError.from(err);
        if (refused.code !== "INVALID_ARGUMENT") throw err;
        // The server will never take this result (over its payload limit, say): reported as a
        // non-retryable failure, the workflow learns why now instead of the attempt timing out
        // and running again forever.
        const error = ApplicationFailure.nonRetryable(`the server refused the activity result: ${refused.message}`, "ResultRefused");
        await report(task, deps, { ok: false, error }, until);
      }
    } else {
      const failure = errorToFailure(outcome.error);
      await reporting(task, deps, "failed", (headers) =>
        withRetry(() => deps.reporter.fail({ taskToken: task.taskToken, failure }, headers), { until, pause: deps.connection.pause }),
      );
    }
  } catch (err) {
    const error = DexError.from(err);
    const what = outcome.ok ? "result" : "failure";
    if (error.code === "NOT_FOUND") {
      deps.logger.warn(`activity ${what} not recorded: the attempt was no longer ours (${error.message})`, activityLogFields(task));
    } else {
      deps.logger.error(`could not report the activity ${what}: ${error.code}: ${error.message}`, activityLogFields(task));
    }
  }
}

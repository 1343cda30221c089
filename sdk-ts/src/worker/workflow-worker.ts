/** The workflow worker: polls one workflow queue and advances runs by replaying workflow code. */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createConsoleLogger, type Logger } from "../common/logger.js";
import { connect } from "../client/connection.js";
import { resolveConnection, type ConnectionOptions } from "../client/environment.js";
import type { Workflow } from "../workflow/types.js";
import { installDeterminismGuard } from "./determinism-guard.js";
import { RunCache } from "./run-cache.js";
import { createPollingWorker, defaultIdentity, type Worker } from "./worker.js";
import { processWorkflowTask } from "./workflow-task.js";
import { registerEagerConsumer } from "./eager-activities.js";
import { eagerStartHoldBack, offerEagerStarts } from "./eager-workflow-tasks.js";
import { parseDuration, type Duration } from "../common/duration.js";
import { createActivationGate } from "./deadlock-watchdog.js";
import { TaskFailureLog } from "./task-failure-log.js";
import { createQueryWorker } from "./query-tasks.js";
import { workerHooks, type WorkerInterceptor } from "./interceptors.js";

/** `address`, `tls` and `apiKey` (see ConnectionOptions) fall back to DEX_ADDRESS, DEX_TLS_* and DEX_API_KEY. */
export interface WorkflowWorkerOptions extends ConnectionOptions {
  /** The workflow task queue to poll. Required. */
  taskQueue: string;
  /** Workflows by registered name; register with shorthand (`{ orderWorkflow }`) so `client.start(orderWorkflow)` finds it. */
  workflows: Record<string, Workflow>;
  /** Workflow tasks processed at once. Default 10. */
  maxConcurrentTasks?: number;
  /** Runs kept in memory so their next task needs only new events. Default 1000. */
  maxCachedRuns?: number;
  /** Worker id sent to the server; must be unique per worker. Default host:pid:random. */
  identity?: string;
  /**
   * Eager activity dispatch: when a workflow task schedules activities on a queue that an activity
   * worker of this process polls (same server address) and that worker has free slots, the
   * completion asks for those activities straight back, leased to that worker, which runs them
   * as if polled; this saves the activity poll's round trip and claim. Default true (as in
   * Temporal); false: every activity goes through a poll.
   */
  eagerActivities?: boolean;
  /**
   * Eager workflow start: `client.start(wf, { eager: true })` in this process, on the same server
   * address and this queue, may hand the new run's first workflow task straight to this worker
   * (in the start's answer) when it has a free slot, which saves the poll's round trip. While such
   * a client exists, polls leave half the free slots for it. Default true; false: this worker
   * takes no task outside its polls.
   */
  eagerStart?: boolean;
  /**
   * How long workflow code may run without yielding (a busy loop) before the watchdog thread reports
   * its task failed and stops this process (a blocked event loop cannot be interrupted; a supervisor
   * restarts the process and its other tasks go to other workers when their leases end). 0 turns the
   * watchdog off. Default "5s". See docs/decisions/0014-workflow-task-failures.md.
   */
  deadlockDetectionTimeout?: Duration;
  /** A run whose task keeps failing is logged the first time, then every this many attempts. Default 10. */
  logTaskFailureEvery?: number;
  /** Default: console, info and above. */
  logger?: Logger;
  /** Hooks around each workflow task and its completion report (e.g. `@dex/opentelemetry`'s tracing); first is outermost. Default none. */
  interceptors?: WorkerInterceptor[];
}

export function createWorkflowWorker(options: WorkflowWorkerOptions): Worker {
  if (!options.taskQueue) throw new TypeError("createWorkflowWorker: taskQueue is required");
  const names = Object.keys(options.workflows ?? {});
  if (names.length === 0) throw new TypeError("createWorkflowWorker: register at least one workflow in `workflows`");
  for (const name of names) {
    if (typeof options.workflows[name] !== "function") throw new TypeError(`createWorkflowWorker: workflow "${name}" is not a function`);
  }
  const maxConcurrent = positive(options.maxConcurrentTasks ?? 10, "maxConcurrentTasks");
  installDeterminismGuard();
  const resolved = resolveConnection(options);
  const connection = connect(resolved);
  const workerId = options.identity ?? defaultIdentity();
  const logger = options.logger ?? createConsoleLogger({ prefix: "[dex]" });
  const cache = new RunCache(options.maxCachedRuns ?? 1_000);
  const eager = options.eagerActivities ?? true;
  const eagerStart = options.eagerStart ?? true;
  const gate = createActivationGate({ timeoutMs: parseDuration(options.deadlockDetectionTimeout ?? "5s"), connection: resolved, logger });
  const failureLog = new TaskFailureLog(positive(options.logTaskFailureEvery ?? 10, "logTaskFailureEvery"));
  const hooks = workerHooks(options.interceptors);
  const deps = { connection, cache, workflows: { ...options.workflows }, taskQueue: options.taskQueue, logger, eagerActivities: eager, gate, failureLog, hooks };

  const worker = createPollingWorker({
    kind: "workflow",
    address: connection.address,
    taskQueue: options.taskQueue,
    maxConcurrent,
    logger,
    async poll(maxTasks, signal, waitMs) {
      const response = await connection.worker.pollWorkflowTasks(
        { taskQueue: options.taskQueue, maxTasks, workerId, maxWait: durationFromMs(waitMs) },
        { signal, deadline: waitMs + 10_000 },
      );
      return response.tasks;
    },
    handle: (task) => processWorkflowTask(task, deps),
    ...(eagerStart ? { holdBack: (free: number) => eagerStartHoldBack(connection.address, free) } : {}),
    pause: connection.pause,
    close: () => {
      void gate.close();
      connection.close();
    },
  });
  // Queries (query-tasks.ts): a poll loop of their own, started and stopped with this worker.
  const queries = createQueryWorker({ connection, cache, workflows: deps.workflows, taskQueue: options.taskQueue, workerId, logger, gate });
  const startWorkflows = worker.start.bind(worker);
  const shutdownWorkflows = worker.shutdown.bind(worker);
  worker.start = () => {
    startWorkflows();
    queries.start();
  };
  worker.shutdown = async () => {
    await Promise.all([queries.shutdown(), shutdownWorkflows()]);
  };
  if (eagerStart) offerEagerStarts(worker, { address: connection.address, taskQueue: options.taskQueue, workerId });
  if (eager) {
    // While it runs, activity workers of this process on the same server leave slots for eager tasks.
    const start = worker.start.bind(worker);
    let unregister: (() => void) | undefined;
    worker.start = () => {
      start();
      unregister ??= registerEagerConsumer(connection.address);
    };
    void worker.done.then(() => unregister?.());
  }
  return worker;
}

export function positive(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new TypeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

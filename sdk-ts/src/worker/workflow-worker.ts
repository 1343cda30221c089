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
  /** Default: console, info and above. */
  logger?: Logger;
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
  const connection = connect(resolveConnection(options));
  const workerId = options.identity ?? defaultIdentity();
  const logger = options.logger ?? createConsoleLogger({ prefix: "[dex]" });
  const cache = new RunCache(options.maxCachedRuns ?? 1_000);
  const deps = { connection, cache, workflows: { ...options.workflows }, taskQueue: options.taskQueue, logger };

  return createPollingWorker({
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
    pause: connection.pause,
    close: () => connection.close(),
  });
}

export function positive(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new TypeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

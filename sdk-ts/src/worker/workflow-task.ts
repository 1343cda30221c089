/**
 * Processing of one workflow task: continue the cached execution or replay
 * history, run the activation, report the commands; on any failure report
 * the task failed with a classified cause and drop the cached run. A
 * completion the server refuses with ABORTED (new inputs arrived) only drops
 * the cached run. A run whose cancellation was requested and whose workflow
 * code fails ends CANCELLED instead (cancel-while-failing.ts).
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { HistoryEvent, WorkflowTask } from "@dex/proto";
import { DexError, WorkflowTaskFailedCause } from "@dex/proto";
import { NonDeterminismError } from "../common/errors.js";
import { errorToFailure } from "../common/failure.js";
import { withFields, type Logger } from "../common/logger.js";
import { PayloadError } from "../common/payload.js";
import type { Connection } from "../client/connection.js";
import { withRetry } from "../client/retry.js";
import { WorkflowExecution } from "../workflow/execution.js";
import type { Workflow } from "../workflow/types.js";
import { guardedRunner } from "./determinism-guard.js";
import type { RunCache } from "./run-cache.js";
import { cancellationRequested, cancelFailingRun } from "./cancel-while-failing.js";
import type { ActivationGate } from "./deadlock-watchdog.js";
import type { TaskFailureLog } from "./task-failure-log.js";
import { reserveEagerSlots } from "./eager-activities.js";
import { intercept, interceptCompletion, type ReportHeaders, type WorkerHooks, type WorkflowTaskInfo } from "./interceptors.js";

export interface WorkflowTaskDeps {
  connection: Connection;
  cache: RunCache;
  workflows: Readonly<Record<string, Workflow>>;
  taskQueue: string;
  logger: Logger;
  /** Offer free slots of this process's activity workers with the completion (eager-activities.ts). */
  eagerActivities?: boolean;
  /** Runs activations one at a time under the deadlock watchdog (deadlock-watchdog.ts). */
  gate: ActivationGate;
  /** Decides which failed attempts are logged (task-failure-log.ts). */
  failureLog: TaskFailureLog;
  /** The worker's interceptors (interceptors.ts); none when unset. */
  hooks?: WorkerHooks;
}

/** The worker has no workflow registered under the task's name. */
export class UnknownWorkflowError extends Error {
  override readonly name = "UnknownWorkflowError";
}

const HISTORY_PAGE_SIZE = 1_000;

/** The interceptors' view of each task being processed, for its completion hooks. */
const taskInfos = new WeakMap<WorkflowTask, WorkflowTaskInfo>();

export async function processWorkflowTask(task: WorkflowTask, deps: WorkflowTaskDeps): Promise<void> {
  // Without interceptors (the default) nothing is allocated for them.
  if (!deps.hooks || deps.hooks.workflowTask.length + deps.hooks.completion.length === 0) return processTask(task, deps);
  const info: WorkflowTaskInfo = {
    runId: task.runId,
    instanceId: task.instanceId,
    workflowName: task.workflowName,
    taskQueue: task.taskQueue,
    attempt: task.attempt,
    traceContext: task.traceContext,
  };
  taskInfos.set(task, info);
  return intercept(deps.hooks.workflowTask, info, () => processTask(task, deps));
}

/** Sends a completion report through the completion hooks, if any, with the call metadata they give (tracing's traceparent). */
async function reporting<T>(
  task: WorkflowTask,
  deps: WorkflowTaskDeps,
  outcome: "completed" | "failed",
  send: (metadata: ReportHeaders) => Promise<T>,
): Promise<T> {
  const info = taskInfos.get(task);
  if (!info || !deps.hooks) return send(undefined);
  let result!: T;
  await interceptCompletion(deps.hooks.completion, { kind: "workflowTask", outcome, task: info }, async (metadata) => {
    result = await send(metadata);
  });
  return result;
}

async function processTask(task: WorkflowTask, deps: WorkflowTaskDeps): Promise<void> {
  const log = withFields(deps.logger, { runId: task.runId, workflowName: task.workflowName, attempt: task.attempt });
  const historyLength = Number(task.historyLength);
  let execution: WorkflowExecution | undefined;
  let history: HistoryEvent[] | undefined;
  // Only a failure of the code itself may end a cancel-requested run; a failed history read may not.
  let codeRan = false;
  let activation;
  try {
    const workflow = lookupWorkflow(task, deps);
    const cached = deps.cache.take(task.runId, historyLength);
    if (!cached) history = await loadHistory(task, deps.connection);
    activation = await deps.gate.run(task, async () => {
      codeRan = true;
      if (cached) {
        execution = cached;
      } else {
        execution = new WorkflowExecution({
          info: {
            runId: task.runId,
            instanceId: task.instanceId,
            workflowName: task.workflowName,
            taskQueue: task.taskQueue,
            attempt: task.attempt,
          },
          workflow,
          runner: guardedRunner,
          logger: deps.logger,
        });
        await execution.replay(history!);
      }
      execution.setAttempt(task.attempt);
      return execution.activate(task.newEvents, task.taskTime);
    });
  } catch (err) {
    if (codeRan && cancellationRequested(task, history, execution)) {
      deps.cache.take(task.runId, -1);
      await reporting(task, deps, "completed", (metadata) => cancelFailingRun(task, err, deps.connection, log, leaseDeadlineOf(task), metadata));
      return;
    }
    await failTask(task, err, deps, log);
    return;
  }

  try {
    // Retried through an outage (a server restart takes seconds) for as long as the lease lasts:
    // after it the token is stale and the task runs again elsewhere anyway. A completion that did
    // land answers NOT_FOUND on the retry.
    const eager = deps.eagerActivities ? reserveEagerSlots(deps.connection.address, activation.commands, task.taskQueue, log) : undefined;
    const request = {
      taskToken: task.taskToken,
      commands: activation.commands,
      eagerActivitySlots: eager?.slots ?? [],
      // Updates the workflow's validation rejected: their inbox rows are deleted, not recorded (decision 0024).
      rejectedUpdates: activation.rejectedUpdates,
    };
    let response;
    try {
      response = await reporting(task, deps, "completed", (metadata) =>
        withRetry(() => deps.connection.worker.completeWorkflowTask(request, metadata && { metadata }), {
          until: leaseDeadlineOf(task),
          pause: deps.connection.pause,
        }),
      );
    } finally {
      // The answer's activity tasks go to their workers; reserved slots they left unused (or all, on an error) go back.
      eager?.settle(response?.activityTasks ?? []);
    }
    const recorded = Number(response.historyLength);
    deps.failureLog.onSuccess(task.runId);
    const live = execution!;
    if (!live.finished && recorded === activation.expectedHistoryLength) {
      live.historyLength = recorded;
      deps.cache.put(task.runId, live);
    }
  } catch (err) {
    const error = DexError.from(err);
    if (error.code === "ABORTED") {
      // Events or a cancellation request reached the run while this task ran, and our commands
      // would have ended it without them. The server applied nothing and hands the task out again
      // with them; our execution already ran ahead to the terminal command, so it must go: the
      // next task of this run replays from history (reading it with GetRunHistory if the server
      // sends none because it expects us to hold the run). Not a failure: nothing to report.
      deps.cache.take(task.runId, -1);
      log.debug(`workflow task handed out again with new inputs: ${error.message}`);
    } else if (error.code === "NOT_FOUND") {
      // The lease expired and the task went elsewhere, or the run ended: our state is stale, nothing to do.
      log.warn(`workflow task was no longer ours when completing it: ${error.message}`);
    } else if (error.code === "INVALID_ARGUMENT" || error.code === "FAILED_PRECONDITION") {
      log.error(`the server rejected the workflow's commands: ${error.message}`);
      await failTask(task, error, deps, log);
    } else {
      log.warn(`could not complete the workflow task (it will be retried): ${error.code}: ${error.message}`);
    }
  }
}

/** Servers before lease_deadline was sent leased workflow tasks for 10 s. */
const DEFAULT_WORKFLOW_TASK_LEASE_MS = 10_000;

function leaseDeadlineOf(task: WorkflowTask): number {
  return task.leaseDeadline ? timestampMs(task.leaseDeadline) : Date.now() + DEFAULT_WORKFLOW_TASK_LEASE_MS;
}

function lookupWorkflow(task: WorkflowTask, deps: WorkflowTaskDeps): Workflow {
  const workflow = Object.hasOwn(deps.workflows, task.workflowName) ? deps.workflows[task.workflowName] : undefined;
  if (workflow) return workflow;
  const known = Object.keys(deps.workflows).join(", ") || "none";
  throw new UnknownWorkflowError(
    `workflow "${task.workflowName}" is not registered on this worker (task queue "${deps.taskQueue}"; registered: ${known}). ` +
      `Add it to createWorkflowWorker({ workflows }) or start the run on a queue whose workers have it.`,
  );
}

/**
 * The task's full history: what the task carries, preceded by whatever it
 * left out (nothing, when the server sent it all) read with GetRunHistory.
 */
async function loadHistory(task: WorkflowTask, connection: Connection): Promise<HistoryEvent[]> {
  const total = BigInt(task.historyLength);
  const firstInline = total - BigInt(task.history.length) + 1n;
  const events: HistoryEvent[] = [];
  let after = 0n;
  while (after < firstInline - 1n) {
    const page = await withRetry(() =>
      connection.client.getRunHistory({
        run: { target: { case: "runId", value: task.runId } },
        afterSequence: after,
        pageSize: HISTORY_PAGE_SIZE,
      }),
      { until: leaseDeadlineOf(task), pause: connection.pause },
    );
    for (const event of page.events) if (event.sequence < firstInline) events.push(event);
    const last = page.events.at(-1);
    if (!last) throw new Error(`history of run ${task.runId} ends at event ${after}; the task expects ${total} events`);
    after = last.sequence;
  }
  events.push(...task.history);
  return events;
}

function failureCause(err: unknown): WorkflowTaskFailedCause {
  if (err instanceof NonDeterminismError) return WorkflowTaskFailedCause.NON_DETERMINISM;
  if (err instanceof UnknownWorkflowError) return WorkflowTaskFailedCause.UNKNOWN_WORKFLOW;
  if (err instanceof PayloadError) return WorkflowTaskFailedCause.PAYLOAD;
  return WorkflowTaskFailedCause.WORKER_ERROR;
}

async function failTask(task: WorkflowTask, err: unknown, deps: WorkflowTaskDeps, log: Logger): Promise<void> {
  deps.cache.take(task.runId, -1);
  const cause = failureCause(err);
  const message = err instanceof Error ? err.message : String(err);
  const when = deps.failureLog.onFailure(task.runId, task.attempt);
  const what = `workflow task failed (${WorkflowTaskFailedCause[cause]}, attempt ${task.attempt}); the run stays open and the task is retried until fixed code is deployed`;
  if (when === "first") {
    const stack = err instanceof Error && err.stack ? err.stack : message;
    log.error(`${what}: ${stack}`);
  } else if (when === "repeat") {
    log.error(`${what} (still failing, logged every ${deps.failureLog.every} attempts): ${message}`);
  } else {
    log.debug(`${what}: ${message}`);
  }
  try {
    await reporting(task, deps, "failed", (metadata) =>
      withRetry(() =>
        deps.connection.worker.failWorkflowTask({ taskToken: task.taskToken, failure: errorToFailure(err), cause }, metadata && { metadata }),
        { until: leaseDeadlineOf(task), pause: deps.connection.pause },
      ),
    );
  } catch (failErr) {
    log.warn(`could not report the failed workflow task: ${DexError.from(failErr).message}`);
  }
}

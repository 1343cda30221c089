/**
 * The query side of a workflow worker (docs/worker-protocol.md, "Query
 * tasks"): polls the query tasks of its workflow queue with its own worker id
 * and answers each from the run's cached execution, untouched, or from a
 * throwaway replay of the history. Its own poll loop and slots, so queries
 * never take a workflow task's slot or delay its poll.
 *
 * Consistency: a cached execution is the state after the last workflow task
 * the server accepted from this worker (run-cache.ts puts it back only then).
 * While one of the run's tasks is in flight the execution is checked out of
 * the cache, so the query replays the recorded history instead of waiting:
 * either way it sees the state as of the last completed workflow task.
 *
 * The replay and the handler are workflow code, so they run through the
 * workflow worker's activation gate (deadlock-watchdog.ts): one at a time
 * with activations, and watched for code that never yields.
 */
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import type { HistoryEvent, QueryTask } from "@dex/proto";
import { DexError } from "@dex/proto";
import type { Connection } from "../client/connection.js";
import { withRetry } from "../client/retry.js";
import { sleep } from "../common/backoff.js";
import { errorToFailure } from "../common/failure.js";
import { withFields, type Logger } from "../common/logger.js";
import { decodePayload, encodePayload } from "../common/payload.js";
import { WorkflowExecution } from "../workflow/execution.js";
import { QueryFailedError } from "../workflow/query.js";
import type { Workflow } from "../workflow/types.js";
import type { ActivationGate } from "./deadlock-watchdog.js";
import { guardedRunner } from "./determinism-guard.js";
import type { RunCache } from "./run-cache.js";
import { createPollingWorker, type Worker } from "./worker.js";

export interface QueryWorkerDeps {
  connection: Connection;
  cache: RunCache;
  workflows: Readonly<Record<string, Workflow>>;
  taskQueue: string;
  workerId: string;
  logger: Logger;
  /** The workflow worker's activation gate: a query's replay and handler are workflow code too (deadlock-watchdog.ts). */
  gate: ActivationGate;
}

/** Queries answered at once; each is short (a handler, or a replay). */
const MAX_CONCURRENT_QUERIES = 4;
const HISTORY_PAGE_SIZE = 1_000;

/** A poll loop for the queue's query tasks; started and shut down with its workflow worker. */
export function createQueryWorker(deps: QueryWorkerDeps): Worker {
  let olderServerLogged = false;
  return createPollingWorker<QueryTask>({
    kind: "query",
    address: deps.connection.address,
    taskQueue: deps.taskQueue,
    maxConcurrent: MAX_CONCURRENT_QUERIES,
    // The workflow poll beside it already logs each outage and reconnection once (info, warn): the
    // query loop's own lines would say it all twice, so they are dropped. Its errors (a server that
    // refuses the poll) still show.
    logger: {
      debug: (message, fields) => deps.logger.debug(message, fields),
      info: () => {},
      warn: () => {},
      error: (message, fields) => deps.logger.error(message, fields),
    },
    async poll(maxTasks, signal, waitMs) {
      try {
        const response = await deps.connection.worker.pollQueryTasks(
          { taskQueue: deps.taskQueue, maxTasks, workerId: deps.workerId, maxWait: durationFromMs(waitMs) },
          { signal, deadline: waitMs + 10_000 },
        );
        return response.tasks;
      } catch (err) {
        if (DexError.from(err).code !== "UNIMPLEMENTED") throw err;
        // A server older than queries: say so once, then ask again only as often as an idle poll would.
        if (!olderServerLogged) deps.logger.warn(`the dex server at ${deps.connection.address} does not serve queries (older than this SDK); this worker answers none`);
        olderServerLogged = true;
        await sleep(waitMs, signal);
        return [];
      }
    },
    handle: (task) => answerQueryTask(task, deps),
    pause: deps.connection.pause,
    // The workflow worker owns the connection.
    close: () => {},
  });
}

export async function answerQueryTask(task: QueryTask, deps: QueryWorkerDeps): Promise<void> {
  const log = withFields(deps.logger, { runId: task.runId, query: task.queryName });
  type Answer = { result?: ReturnType<typeof encodePayload>; failure?: ReturnType<typeof errorToFailure>; workerError?: boolean };
  let answer: Answer | undefined;
  try {
    const args = decodePayload(task.args);
    const ask = (execution: WorkflowExecution): Answer => {
      try {
        return { result: encodePayload(execution.query(task.queryName, args)) };
      } catch (err) {
        if (!(err instanceof QueryFailedError)) throw err;
        return { failure: errorToFailure(err) };
      }
    };
    // The cache is read inside the gate: before it, a workflow task queued ahead could take the run and
    // activate it, and the query would see commands the server has not accepted.
    answer = await deps.gate.runQuery(task, async () => {
      const cached = deps.cache.peek(task.runId);
      if (!cached || cached.historyLength < Number(task.historyLength)) return undefined;
      try {
        return ask(cached);
      } finally {
        // Evicted before anything else runs: an async handler's continuation could still issue commands
        // into it, and the next task would send them as if the run's code had (query.ts, "tainted").
        if (cached.queries.tainted) deps.cache.take(task.runId, -1);
      }
    });
    if (!answer) {
      const workflow = lookupWorkflow(task, deps);
      const history = await readHistory(task, deps.connection);
      answer = await deps.gate.runQuery(task, async () => ask(await replayForQuery(task, workflow, history)));
    }
  } catch (err) {
    log.warn(`could not rebuild the run's state to answer a query: ${err instanceof Error ? err.message : String(err)}`);
    answer = { failure: errorToFailure(err), workerError: true };
  }
  try {
    await withRetry(() => deps.connection.worker.respondQueryTask({ queryId: task.queryId, ...answer }), { until: answerDeadline(task), pause: deps.connection.pause });
  } catch (err) {
    // NOT_FOUND: the caller stopped waiting; nothing to do.
    log.debug(`query answer not delivered: ${DexError.from(err).message}`);
  }
}

/** A throwaway execution replayed from the recorded history up to the query's history length. */
async function replayForQuery(task: QueryTask, workflow: Workflow, history: HistoryEvent[]): Promise<WorkflowExecution> {
  const execution = new WorkflowExecution({
    info: { runId: task.runId, instanceId: task.instanceId, workflowName: task.workflowName, taskQueue: task.taskQueue, attempt: 1 },
    workflow,
    runner: guardedRunner,
  });
  await execution.replay(history);
  return execution;
}

function lookupWorkflow(task: QueryTask, deps: QueryWorkerDeps): Workflow {
  const workflow = Object.hasOwn(deps.workflows, task.workflowName) ? deps.workflows[task.workflowName] : undefined;
  if (!workflow) {
    throw new Error(`workflow "${task.workflowName}" is not registered on this worker (task queue "${deps.taskQueue}")`);
  }
  return workflow;
}

/** When the caller stops waiting: past it, neither a history read nor an answer is worth retrying. */
function answerDeadline(task: QueryTask): number {
  return task.deadline ? timestampMs(task.deadline) : Date.now() + 10_000;
}

/**
 * The history up to the query's history length, each page retried through an outage as the workflow
 * task's history load is (workflow-task.ts). A history that ends short fails the query: an answer from
 * a truncated replay would be a state the run never had.
 */
async function readHistory(task: QueryTask, connection: Connection): Promise<HistoryEvent[]> {
  const total = task.historyLength;
  const until = answerDeadline(task);
  const events: HistoryEvent[] = [];
  let after = 0n;
  while (after < total) {
    const page = await withRetry(
      () =>
        connection.client.getRunHistory({
          run: { target: { case: "runId", value: task.runId } },
          afterSequence: after,
          pageSize: HISTORY_PAGE_SIZE,
        }),
      { until, pause: connection.pause },
    );
    for (const event of page.events) if (event.sequence <= total) events.push(event);
    const last = page.events.at(-1);
    if (!last) throw new Error(`history of run ${task.runId} ends at event ${after}; the query expects ${total} events`);
    after = last.sequence;
  }
  return events;
}

/**
 * Queries (ClientService.QueryRun; docs/decisions/0023-queries.md): a caller
 * asks, a workflow worker of the run's queue answers, nothing is written to
 * history. The question and the answer travel through dex.query_tasks (one
 * row per query in flight, store/query-tasks.ts), so the caller may wait on
 * one server while the worker polls another.
 *
 * WAKE-UPS, the one mechanism (engine/notifier.ts): a new query wakes the
 * query polls of its queue as a queue wake of type "query" (`query:<queue>`;
 * in process at once, NOTIFY after commit for the other servers), and the
 * preferred worker by name. The answer wakes the caller as a run wake keyed by
 * the query's id (`run:<query id>`): query ids are fresh UUIDs, so no run
 * waiter ever shares the key, and the other servers' listeners already route
 * run wakes. The workflow-task polls subscribe to type "workflow" and are
 * never woken by a query: queries stay out of the hot path.
 */
import { randomUUID } from "node:crypto";
import { DexError, type Failure, type Payload } from "@dex/proto";
import {
  answerQueryTask,
  claimQueryTasks,
  deleteQueryTask,
  insertQueryTask,
  preferredWorkersWaiting,
  queryTaskQueue,
  readQueryTask,
  type ClaimedQueryTask,
  type QueryTaskState,
} from "../store/query-tasks.js";
import { runWakeupPayload } from "../store/notify.js";
import { getRun } from "../store/runs.js";
import type { Engine } from "./context.js";
import { decodeFailure, decodePayload, encodeFailure, encodePayload } from "./events.js";
import { longPoll } from "./long-poll.js";
import { isTerminal, type RunStatus } from "./model.js";
import { announceQueues, notifyAfterCommit } from "./notifier.js";
import { requireRun, type RunSelector } from "./runs.js";

/** The wake-up type of query tasks (a queue wake `query:<workflow queue>`). */
export const QUERY_TASKS = "query";
/**
 * How long a query of a cached run waits for the worker that holds it before
 * any worker may take it: shorter than a workflow task's (3 s), as the caller
 * is waiting and another worker only has to replay.
 */
export const QUERY_STICKY_FALLBACK_MS = 1_000;
/** The caller re-reads its row this often without a wake (a lost NOTIFY of the answer). */
const ANSWER_FALLBACK_MS = 2_000;

export interface QueryOutcome {
  runId: string;
  result: Payload | undefined;
}

export async function queryRun(
  engine: Engine,
  input: { selector: RunSelector; queryName: string; args: Payload | undefined; until: number },
  signal: AbortSignal,
): Promise<QueryOutcome> {
  const run = await requireRun(engine, input.selector);
  const id = randomUUID();
  // An ended run's worker dropped it from its cache: any worker replays the final history.
  const preferred = isTerminal(run.status as RunStatus) ? null : run.stickyWorkerId;
  const timeoutMs = Math.max(1, input.until - Date.now());
  await insertQueryTask(engine.sql, {
    id,
    runId: run.id,
    queue: run.taskQueue,
    queryName: input.queryName,
    args: encodePayload(input.args),
    historyLength: run.historyLength,
    preferredWorkerId: preferred,
    timeoutMs,
  });
  engine.wakeups.wakeQueue(QUERY_TASKS, run.taskQueue);
  if (preferred) {
    engine.wakeups.wakeWorker(QUERY_TASKS, run.taskQueue, preferred);
    // When the preferred worker has had its chance, every server's polls look again.
    engine.wakeups.wakeQueueAt(QUERY_TASKS, run.taskQueue, new Date(Date.now() + QUERY_STICKY_FALLBACK_MS + 50), "everywhere");
  }
  announceQueues(engine, QUERY_TASKS, [run.taskQueue]);

  let final: QueryTaskState | undefined;
  let checks = 0;
  try {
    await longPoll({
      subscribe: () => engine.wakeups.subscribeRun(id),
      // A row gone before the caller deleted it: the claim found the run deleted (store claimQueryTasks).
      check: async () => {
        const state = await readQueryTask(engine.sql, id);
        if (!state || state.answered) return true;
        // Still untaken at a later check: announce it again. The fallback tick skips query queues
        // (background.ts), so a lost NOTIFY is covered here, by the one caller that cares, at no
        // cost while no query is in flight (an idle fleet's polls of query tasks stay parked).
        if (checks++ > 0 && !state.claimedBy) {
          engine.wakeups.wakeQueue(QUERY_TASKS, run.taskQueue);
          announceQueues(engine, QUERY_TASKS, [run.taskQueue]);
        }
        return undefined;
      },
      until: input.until,
      fallbackMs: ANSWER_FALLBACK_MS,
      signal,
      closing: () => engine.wakeups.isClosed,
    });
  } finally {
    // Deleting decides: an answer that lands after this finds no row (NOT_FOUND to the worker).
    final = await deleteQueryTask(engine.sql, id);
  }
  // The run was deleted (DeleteRun, retention) after the query was asked: say so, whatever the wait saw.
  if (!final?.answered || decodeFailure(final.failure)) await requireRunStill(engine, run.id, input.queryName);
  if (final?.answered) {
    const failure = decodeFailure(final.failure);
    if (!failure) return { runId: run.id, result: decodePayload(final.result) };
    const what = `query "${input.queryName}" of run ${run.id}`;
    if (final.workerError) {
      throw new DexError("FAILED_PRECONDITION", `the worker could not rebuild the run's state for ${what}: ${failure.message}`);
    }
    throw new DexError("INVALID_ARGUMENT", `${what} failed: ${failure.message}`);
  }
  const waited = `${(timeoutMs / 1000).toFixed(1)} s`;
  if (!final?.claimedBy) {
    throw new DexError(
      "FAILED_PRECONDITION",
      `no worker took query "${input.queryName}" of run ${run.id} within ${waited}: start a workflow worker for task queue "${run.taskQueue}" ` +
        `(a worker older than queries does not poll them), or ask again with a longer timeout`,
    );
  }
  throw new DexError(
    "DEADLINE_EXCEEDED",
    `worker ${final.claimedBy} took query "${input.queryName}" of run ${run.id} but did not answer within ${waited}`,
  );
}

async function requireRunStill(engine: Engine, runId: string, queryName: string): Promise<void> {
  if (await getRun(engine.sql, { runId })) return;
  throw new DexError(
    "NOT_FOUND",
    `run ${runId} was deleted (DeleteRun or retention) while query "${queryName}" waited for an answer; an ended run can be queried only until it is deleted`,
  );
}

export async function pollQueryTasks(
  engine: Engine,
  request: { queue: string; workerId: string; maxTasks: number; waitUntil: number },
  signal: AbortSignal,
): Promise<ClaimedQueryTask[]> {
  const tasks = await longPoll({
    subscribe: () => engine.wakeups.subscribeQueue(QUERY_TASKS, request.queue, request.workerId),
    check: async () => {
      const { tasks: claimed, runGone } = await claimQueryTasks(engine.sql, {
        queue: request.queue,
        workerId: request.workerId,
        limit: request.maxTasks,
        stickyFallbackMs: QUERY_STICKY_FALLBACK_MS,
      });
      // Queries of deleted runs were dropped, not claimed: their callers answer NOT_FOUND now, not at their timeout.
      if (runGone.length > 0) {
        for (const id of runGone) engine.wakeups.wakeRun(id);
        notifyAfterCommit(engine, runGone.map((id) => runWakeupPayload(id, engine.origin)));
      }
      if (claimed.length > 0) return claimed;
      // A queue wake reaches the oldest parked poll, perhaps not the preferred worker's: wake that one by name.
      for (const workerId of await preferredWorkersWaiting(engine.sql, request)) {
        engine.wakeups.wakeWorker(QUERY_TASKS, request.queue, workerId);
      }
      return undefined;
    },
    until: request.waitUntil,
    // No re-check of its own and no fallback tick (background.ts): the waiting caller re-announces
    // a query nobody took (queryRun), so a lost wake costs a 2 s delay, and an idle poll nothing.
    fallbackMs: Number.POSITIVE_INFINITY,
    signal,
    closing: () => engine.wakeups.isClosed,
    onSpareWake: () => engine.wakeups.wakeQueue(QUERY_TASKS, request.queue),
  });
  return tasks ?? [];
}

/** The workflow queue of a query in flight (a queue-limited worker key may answer only its queues' queries). */
export async function queueOfQuery(engine: Engine, id: string): Promise<string> {
  const queue = UUID.test(id) ? await queryTaskQueue(engine.sql, id) : undefined;
  if (queue === undefined) throw notWaiting(id);
  return queue;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function notWaiting(id: string): DexError {
  return new DexError(
    "NOT_FOUND",
    `query ${id} is not waiting for an answer: unknown, answered already, or its caller stopped waiting (timeout)`,
  );
}

export async function respondQueryTask(
  engine: Engine,
  input: { id: string; result: Payload | undefined; failure: Failure | undefined; workerError: boolean },
): Promise<void> {
  const recorded = await answerQueryTask(engine.sql, {
    id: input.id,
    result: encodePayload(input.result),
    failure: encodeFailure(input.failure),
    workerError: input.workerError,
  });
  if (!recorded) throw notWaiting(input.id);
  engine.wakeups.wakeRun(input.id);
  notifyAfterCommit(engine, [runWakeupPayload(input.id, engine.origin)]);
}

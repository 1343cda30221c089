/**
 * The query RPCs (ClientService.QueryRun, WorkerService.PollQueryTasks and
 * RespondQueryTask): validation and proto mapping around engine/query-tasks.ts.
 * Kept here so client-service.ts and worker-service.ts only list them.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, type Duration } from "@bufbuild/protobuf/wkt";
import type {
  CallContext,
  PollQueryTasksRequest,
  PollQueryTasksResponseSchema,
  QueryRunRequest,
  QueryRunResponseSchema,
  QueryTaskSchema,
  RespondQueryTaskRequest,
  RespondQueryTaskResponseSchema,
} from "@dex/proto";
import type { Engine } from "../engine/context.js";
import { decodePayload } from "../engine/events.js";
import { QueueType } from "../engine/model.js";
import { pollQueryTasks, queryRun, respondQueryTask } from "../engine/query-tasks.js";
import { durationField, failureField, invalid, payloadField, quote, requireString } from "../engine/validation.js";
import type { ClaimedQueryTask } from "../store/query-tasks.js";
import { pollRequest, runSelector, waitDeadline } from "./common.js";

/** QueryRunRequest.timeout: 0 means this; the call's deadline, if sooner, wins. */
export const DEFAULT_QUERY_TIMEOUT_MS = 10_000;
/** The longest QueryRunRequest.timeout. */
export const MAX_QUERY_TIMEOUT_MS = 60_000;
/** QueryRunRequest.query_name: like other names. */
const MAX_QUERY_NAME_LENGTH = 255;

export async function queryRunHandler(
  engine: Engine,
  req: QueryRunRequest,
  context: CallContext,
): Promise<MessageInitShape<typeof QueryRunResponseSchema>> {
  const selector = runSelector("run", req.run);
  const queryName = requireString("query_name", req.queryName, MAX_QUERY_NAME_LENGTH);
  const args = payloadField("args", req.args, engine.limits);
  const timeoutMs = queryTimeout(req.timeout);
  // The server's cap on long waits applies as to every other wait (maxPollWaitMs, default 20 s).
  const until = waitDeadline(timeoutMs, context, Math.min(MAX_QUERY_TIMEOUT_MS, engine.maxPollWaitMs));
  const outcome = await queryRun(engine, { selector, queryName, args, until }, context.signal);
  return { runId: outcome.runId, result: outcome.result };
}

function queryTimeout(timeout: Duration | undefined): number {
  const ms = durationField("timeout", timeout, { maxMs: MAX_QUERY_TIMEOUT_MS });
  return ms === undefined || ms === 0 ? DEFAULT_QUERY_TIMEOUT_MS : ms;
}

export async function pollQueryTasksHandler(
  engine: Engine,
  req: PollQueryTasksRequest,
  context: CallContext,
): Promise<MessageInitShape<typeof PollQueryTasksResponseSchema>> {
  // Query tasks are polled on the run's workflow task queue.
  const tasks = await pollQueryTasks(engine, await pollRequest(engine, QueueType.WORKFLOW, req, context), context.signal);
  return { tasks: tasks.map(queryTask) };
}

function queryTask(task: ClaimedQueryTask): MessageInitShape<typeof QueryTaskSchema> {
  return {
    queryId: task.id,
    runId: task.runId,
    instanceId: task.instanceId,
    workflowName: task.workflowName,
    taskQueue: task.queue,
    queryName: task.queryName,
    args: decodePayload(task.args),
    historyLength: BigInt(task.historyLength),
    deadline: timestampFromDate(task.expiresAt),
  };
}

export async function respondQueryTaskHandler(
  engine: Engine,
  req: RespondQueryTaskRequest,
): Promise<MessageInitShape<typeof RespondQueryTaskResponseSchema>> {
  const id = queryId(req.queryId);
  const result = payloadField("result", req.result, engine.limits);
  const failure = failureField("failure", req.failure, engine.limits);
  if (result && failure) throw invalid("set either result or failure, not both");
  if (!result && !failure) throw invalid("set result (the handler's value) or failure (why there is none)");
  if (req.workerError && !failure) throw invalid("worker_error goes with a failure");
  await respondQueryTask(engine, { id, result, failure, workerError: req.workerError });
  return {};
}


const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function queryId(value: string): string {
  if (value === "") throw invalid("query_id is required: pass the QueryTask's query_id");
  if (!UUID.test(value)) throw invalid(`query_id ${quote(value)} is not a query id: pass the QueryTask's query_id (a UUID) unchanged`);
  return value.toLowerCase();
}

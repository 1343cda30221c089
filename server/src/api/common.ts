/** Helpers every handler uses: run selectors, long-poll deadlines, and error normalisation. */
import { randomBytes } from "node:crypto";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { DexError, type CallContext, type RunSelector as ProtoRunSelector } from "@dex/proto";
import type { Engine } from "../engine/context.js";
import type { QueueType } from "../engine/model.js";
import type { RunSelector } from "../engine/runs.js";
import { deletedQueueError, requireQueue } from "../engine/task-queues.js";
import { durationField, intInRange, invalid, queueName, requireString, uuid } from "../engine/validation.js";
import { isQueryCancelled, isTransientDatabaseError } from "../store/errors.js";

export function runSelector(field: string, selector: ProtoRunSelector | undefined): RunSelector {
  const target = selector?.target;
  if (!target || target.case === undefined) {
    throw invalid(`${field} is required: set ${field}.run_id or ${field}.instance_id`);
  }
  if (target.case === "runId") return { runId: uuid(`${field}.run_id`, target.value) };
  return { instanceId: requireString(`${field}.instance_id`, target.value) };
}

/** Answer a long poll this long before the call's deadline, so the answer arrives in time. */
const DEADLINE_MARGIN_MS = 250;
export const DEFAULT_POLL_WAIT_MS = 20_000;
export const MAX_POLL_WAIT_MS = 60_000;

/**
 * When a long poll must answer: the requested wait (0 = 20 s, at most 60 s),
 * capped by the server's maxPollWaitMs and by the call's deadline.
 */
export function pollDeadline(
  field: string,
  maxWait: Duration | undefined,
  context: CallContext,
  serverCapMs: number,
): number {
  const requested = durationField(field, maxWait, { maxMs: MAX_POLL_WAIT_MS }) ?? DEFAULT_POLL_WAIT_MS;
  return waitDeadline(requested, context, serverCapMs);
}

/** What every poll RPC asks (PollWorkflowTasks, PollActivityTasks, PollQueryTasks), validated. */
export interface PollRequest {
  queue: string;
  workerId: string;
  maxTasks: number;
  waitUntil: number;
}

/**
 * A poll's fields checked the one way all polls check them: task_queue a queue name of an existing
 * queue of `type` (query tasks poll a workflow queue), worker_id required, max_tasks 0 (= 1) to 100,
 * max_wait as pollDeadline says.
 */
export async function pollRequest(
  engine: Engine,
  type: QueueType,
  req: { taskQueue: string; workerId: string; maxTasks: number; maxWait?: Duration | undefined },
  context: CallContext,
): Promise<PollRequest> {
  const queue = queueName("task_queue", req.taskQueue);
  const workerId = requireString("worker_id", req.workerId);
  const maxTasks = req.maxTasks === 0 ? 1 : intInRange("max_tasks", req.maxTasks, 0, 100);
  const waitUntil = pollDeadline("max_wait", req.maxWait, context, engine.maxPollWaitMs);
  await requireQueue(engine, type, queue, "task_queue");
  return { queue, workerId, maxTasks, waitUntil };
}

export function waitDeadline(requestedMs: number, context: CallContext, serverCapMs: number): number {
  let until = Date.now() + Math.min(requestedMs, serverCapMs);
  const deadline = context.deadline?.getTime();
  if (deadline !== undefined && Number.isFinite(deadline)) {
    until = Math.min(until, deadline - Math.min(DEADLINE_MARGIN_MS, Math.max(0, (deadline - Date.now()) / 10)));
  }
  return until;
}

/**
 * Normalises errors leaving a handler: DexErrors pass through; a task queue
 * deleted under the call (by another server) becomes NOT_FOUND; a database
 * that is away becomes UNAVAILABLE (retry later); a statement timeout becomes
 * DEADLINE_EXCEEDED; anything else stays as is and grpcService reports it as
 * INTERNAL and logs it.
 */
export function normaliseError(err: unknown): unknown {
  if (err instanceof DexError) return err;
  const queueGone = deletedQueueError(err);
  if (queueGone) return queueGone;
  if (isTransientDatabaseError(err)) {
    return new DexError("UNAVAILABLE", "the database is unavailable right now; retry shortly", { cause: err });
  }
  if (isQueryCancelled(err)) {
    return new DexError("DEADLINE_EXCEEDED", "the database statement took too long and was cancelled", { cause: err });
  }
  return err;
}

/**
 * Wraps every handler of a service with normaliseError. Unexpected errors are
 * logged with a short id and answered INTERNAL with that id only: SQL and
 * stack details stay in the server log.
 */
export function guarded<H extends Record<string, (...args: never[]) => Promise<unknown>>>(
  handlers: H,
  onUnavailable: (method: string, err: unknown) => void,
  onInternal: (method: string, err: unknown, id: string) => void,
): H {
  const out: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(handlers)) {
    out[name] = async (...args: never[]) => {
      try {
        return await handler(...args);
      } catch (err) {
        const normalised = normaliseError(err);
        if (!(normalised instanceof DexError)) {
          const id = randomBytes(4).toString("hex");
          onInternal(name, err, id);
          throw new DexError("INTERNAL", `internal server error ${id}; the server log has the details`, { cause: err });
        }
        if (normalised.code === "UNAVAILABLE" && !(err instanceof DexError)) onUnavailable(name, err);
        throw normalised;
      }
    };
  }
  return out as H;
}

export function unimplemented(rpc: string, version = "a later version"): () => Promise<never> {
  return async () => {
    throw new DexError("UNIMPLEMENTED", `${rpc} is not implemented by this server yet; it lands in ${version}`);
  };
}

/**
 * Starting a run: the start statement (store/runs.ts insertRuns), with the
 * instance-id rules resolved around it. A run without a concurrency key goes
 * through the group commit (start-batch.ts: starts arriving together share one
 * statement and one commit); what the batch cannot answer comes back here, one
 * by one. A run with a concurrency key is inserted waiting in its key's line
 * and, in the same transaction, handed a slot if one is free
 * (concurrency-keys.ts). Wake-ups go out after the commit, never from inside
 * the statement: in-process at once, to other servers through
 * engine/notifier.ts (start-batch.ts announceStarts, or inTransaction).
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { DexError, HistoryEventSchema, type Payload } from "@dex/proto";
import { uuidv7 } from "uuidv7";
import { findOpenRun, insertRun, type InsertRunOutcome, type NewRun } from "../store/runs.js";
import { handOverSlots } from "./concurrency-keys.js";
import type { Engine } from "./context.js";
import { inTransaction } from "./effects.js";
import { encodePayload } from "./events.js";
import { runAlreadyOpen, runReuseRejected } from "./run-refusals.js";
import { leaseEagerStart } from "./eager-start.js";
import { announceStarts, submitStart, type StartingRun } from "./start-batch.js";
import type { PolledWorkflowTask } from "./workflow-tasks.js";

export const ConflictPolicy = { FAIL: "fail", USE_EXISTING: "use_existing" } as const;
export type ConflictPolicy = (typeof ConflictPolicy)[keyof typeof ConflictPolicy];
export const ReusePolicy = { ALLOW: "allow", ALLOW_IF_FAILED: "allow_if_failed", REJECT: "reject" } as const;
export type ReusePolicy = (typeof ReusePolicy)[keyof typeof ReusePolicy];

export interface StartRequest {
  workflowName: string;
  instanceId: string;
  taskQueue: string;
  input: Payload | undefined;
  labels: Record<string, string>;
  priority: number;
  requestId: string;
  conflictPolicy: ConflictPolicy;
  reusePolicy: ReusePolicy;
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
  /** The run timeout (engine/run-timeouts.ts); unset or null: none. */
  runTimeoutMs?: number | null;
  /** The lease of the run's workflow tasks; unset or null: WORKFLOW_TASK_LEASE_MS. */
  workflowTaskTimeoutMs?: number | null;
  /** Eager workflow start (eager-start.ts): the worker to lease a NEW run's first task to; none when unset. */
  eagerWorkerId?: string | null;
  /** The start request's W3C trace context (api/trace-context.ts), stored with the run; unset or null: none. */
  traceContext?: Record<string, string> | null;
}

export interface StartResult {
  runId: string;
  started: boolean;
  /** The new run's first task, leased to request.eagerWorkerId; unset when none was asked for or it could not be. */
  eagerTask?: PolledWorkflowTask;
}

/** How often a start retries when the open run it conflicted with ended in between. */
const MAX_START_ATTEMPTS = 3;

/**
 * The row and run_started event of a new run, as the start statement (store/runs.ts) takes them.
 * `_engine` is unused since the wake-up left the statement; it goes with its callers' argument.
 */
export function newRun(
  request: Omit<StartRequest, "conflictPolicy">,
  extra: {
    runId?: string;
    parent?: NewRun["parent"];
    continuedFromRunId?: string | null;
    /** continue-as-new: the run takes over the slot of its key that the run it continues holds. */
    holdsSlot?: boolean;
  } = {},
): NewRun {
  const startedEvent = toBinary(
    HistoryEventSchema,
    create(HistoryEventSchema, {
      attributes: {
        case: "runStarted",
        value: {
          workflowName: request.workflowName,
          instanceId: request.instanceId,
          taskQueue: request.taskQueue,
          input: request.input,
          labels: request.labels,
          priority: request.priority,
          parentRunId: extra.parent?.runId ?? "",
          continuedFromRunId: extra.continuedFromRunId ?? "",
        },
      },
    }),
  );
  return {
    id: extra.runId ?? uuidv7(),
    instanceId: request.instanceId,
    workflowName: request.workflowName,
    taskQueue: request.taskQueue,
    priority: request.priority,
    labels: request.labels,
    requestId: request.requestId,
    concurrencyKey: request.concurrencyKey,
    concurrencyLimit: request.concurrencyKey === null ? null : (request.concurrencyLimit ?? 1),
    concurrencyWaiting: request.concurrencyKey !== null && !extra.holdsSlot,
    input: encodePayload(request.input),
    startedEvent,
    reusePolicy: request.reusePolicy,
    parent: extra.parent ?? null,
    continuedFromRunId: extra.continuedFromRunId ?? null,
    runTimeoutMs: request.runTimeoutMs ?? null,
    workflowTaskTimeoutMs: request.workflowTaskTimeoutMs ?? null,
    traceContext: request.traceContext ?? null,
  };
}

export async function startWorkflow(engine: Engine, request: StartRequest): Promise<StartResult> {
  const eagerWorkerId = request.eagerWorkerId ?? null;
  // A keyed run's task (if it got a slot) is announced by its own transaction: nothing to defer.
  const { result, run } = await startRun(engine, request, eagerWorkerId !== null && request.concurrencyKey === null);
  // Only a run this call started: a returned existing run's task may be anyone's already.
  if (eagerWorkerId === null || !result.started || !run) return result;
  const eagerTask = await leaseEagerStart(engine, run, eagerWorkerId);
  return eagerTask ? { ...result, eagerTask } : result;
}

/** The start itself; `run` is the run it inserted, if it did. `wakeDeferred`: see StartingRun. */
async function startRun(engine: Engine, request: StartRequest, wakeDeferred: boolean): Promise<{ result: StartResult; run?: StartingRun }> {
  if (request.concurrencyKey === null) {
    // The batch woke the queues and logged the starts; its other answers are insertRun's.
    const run: StartingRun = { ...newRun(request), wakeDeferred };
    const batched = await submitStart(engine, run);
    if (batched.outcome === "started") return { result: { runId: batched.runId, started: true }, run };
    if (batched.outcome !== "alone") return { result: answer(request, batched) };
  }
  return startWorkflowAlone(engine, request, wakeDeferred);
}

/** One start on its own: insertRun (or a keyed run's transaction), with open-run conflicts resolved. */
async function startWorkflowAlone(
  engine: Engine,
  request: StartRequest,
  wakeDeferred: boolean,
): Promise<{ result: StartResult; run?: StartingRun }> {
  for (let attempt = 1; ; attempt++) {
    const run: StartingRun = { ...newRun(request), wakeDeferred };
    const runId = run.id;
    const outcome = run.concurrencyKey === null ? await insertRun(engine.sql, run) : await insertKeyedRun(engine, run);
    switch (outcome.outcome) {
      case "started":
        // A keyed run's wake-up, if it got a slot, was announced by its transaction.
        if (run.concurrencyKey === null) announceStarts(engine, [run]);
        engine.logger.debug("run started", { runId, instanceId: request.instanceId, workflow: request.workflowName });
        return { result: { runId: outcome.runId, started: true }, run };
      case "queue_missing":
      case "same_request":
      case "reuse_rejected":
        return { result: answer(request, outcome) };
      case "open_run_exists": {
        // Re-read in a fresh statement: the failed one saw a snapshot without the winner.
        const open = await findOpenRun(engine.sql, request.instanceId);
        if (!open) {
          if (attempt < MAX_START_ATTEMPTS) continue; // it ended in between: try again
          throw new DexError("ABORTED", `instance id "${request.instanceId}" is changing state rapidly; retry the start`);
        }
        if (request.requestId !== "" && open.requestId === request.requestId) return { result: { runId: open.id, started: false } };
        if (request.conflictPolicy === ConflictPolicy.USE_EXISTING) return { result: { runId: open.id, started: false } };
        throw new DexError(
          "ALREADY_EXISTS",
          `instance id "${request.instanceId}" already has an open run ${open.id}; wait for it to end, ` +
            `or start with conflict_policy USE_EXISTING to get that run`,
          { details: runAlreadyOpen(request.instanceId, open.id) },
        );
      }
    }
  }
}

/** The answer to a start that started nothing: insertRun's verdict, the same on both paths. */
function answer(
  request: StartRequest,
  outcome: Extract<InsertRunOutcome, { outcome: "queue_missing" | "same_request" | "reuse_rejected" }>,
): StartResult {
  switch (outcome.outcome) {
    case "queue_missing":
      throw new DexError(
        "NOT_FOUND",
        `task_queue: workflow task queue "${request.taskQueue}" does not exist; create it first (TaskQueueService.CreateTaskQueue)`,
      );
    case "same_request":
      return { runId: outcome.runId, started: false };
    case "reuse_rejected":
      throw new DexError(
        "ALREADY_EXISTS",
        `instance id "${request.instanceId}" already had run ${outcome.latestRunId} (${outcome.latestStatus}) and ` +
          `reuse_policy ${request.reusePolicy === ReusePolicy.REJECT ? "REJECT forbids another run" : "ALLOW_IF_FAILED allows another run only after a failed, cancelled or terminated one"}`,
        { details: runReuseRejected(request.instanceId, outcome.latestRunId, outcome.latestStatus) },
      );
  }
}

/**
 * insertRun for a run with a concurrency key: the insert (waiting, no task),
 * then, as the transaction's last writes, the key's hand-over, which gives this
 * run its workflow task if it is the head of the line and a slot is free. A
 * run that was not inserted (an open run, a check that refused it) wrote
 * nothing and takes no key lock.
 */
async function insertKeyedRun(engine: Engine, run: NewRun): Promise<InsertRunOutcome> {
  return inTransaction(engine, async (tx, effects) => {
    const outcome = await insertRun(tx, run);
    if (outcome.outcome === "started") await handOverSlots(tx, effects, run.concurrencyKey!);
    return outcome;
  });
}

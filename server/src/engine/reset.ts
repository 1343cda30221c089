/**
 * ResetRun (docs/decisions/0026-reset.md): a new run of the same instance
 * whose history is the old run's up to a workflow-task boundary
 * (reset-plan.ts), in ONE transaction:
 *   1. lock the old run (a retry with the same request id stops here);
 *   2. re-deliver the old run's external events and updates after the point
 *      to the new run's inbox (before step 3 empties the old inbox), and
 *      claim for the new run the update ids it now holds (kept or
 *      re-delivered), so a retry of an update reaches the run that answers it;
 *   3. terminate the old run if it is open (run_terminated names the new
 *      run; parent-close policy applies to its children, as for TerminateRun);
 *   4. create the new run with the start statement (store/runs.ts
 *      insertRuns), its run_started the old one's plus reset_from_run_id;
 *   5. copy the kept history, schedule again what was in flight at the point,
 *      and record the link (dex.run_resets).
 * The old run ends in the transaction that creates the new one, and the
 * open-run unique index holds across both: at most one open run per instance.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { DexError, HistoryEventSchema, type HistoryEvent } from "@dex/proto";
import { uuidv7 } from "uuidv7";
import { lockRun, type LockedRun } from "../store/completion-locks.js";
import { insertActivityTasks } from "../store/completion.js";
import { readHistory } from "../store/history.js";
import { resolveRunId } from "../store/lifecycle.js";
import {
  copyKeptHistory,
  findResetByRequest,
  insertResetLink,
  missingActivityQueues,
  readResetLinks,
  readRunTimeouts,
  redeliverInputs,
  type ResetLinks,
} from "../store/reset.js";
import { findOpenRun, insertRun } from "../store/runs.js";
import { insertTimers } from "../store/timers.js";
import type { Engine } from "./context.js";
import { decodeEvent } from "./events.js";
import { Retry, terminateLocked, terminationRecords, withRetries } from "./lifecycle.js";
import { isTerminal, QueueType, RunStatus } from "./model.js";
import { runAlreadyOpen } from "./run-refusals.js";
import type { RunSelector } from "./runs.js";
import { newRun, ReusePolicy } from "./start.js";
import { planReset, type ResetPoint } from "./reset-plan.js";

export interface ResetRequest {
  selector: RunSelector;
  point: ResetPoint;
  reason: string;
  /** '' for none. */
  requestId: string;
}

export interface ResetResult {
  runId: string;
  created: boolean;
  keptEvents: number;
  redeliveredEvents: number;
}

/** Histories are read whole: a reset is rare and the plan needs every event before the point. */
const HISTORY_READ_LIMIT = 1_000_000;

export async function resetRun(engine: Engine, request: ResetRequest): Promise<ResetResult> {
  return withRetries(engine, "ResetRun", async (tx, effects) => {
    const oldRunId = await resolveRunId(tx, request.selector);
    const old = oldRunId ? await lockRun(tx, oldRunId) : undefined;
    if (!old) {
      throw new DexError(
        "NOT_FOUND",
        "runId" in request.selector ? `run ${request.selector.runId} not found` : `no run of instance id "${request.selector.instanceId}" found`,
      );
    }
    if (request.requestId !== "") {
      const earlier = await findResetByRequest(tx, old.id, request.requestId);
      if (earlier) return { runId: earlier.newRunId, created: false, keptEvents: earlier.historyLength, redeliveredEvents: 0 };
    }
    refuseUnsupported(old);
    const open = !isTerminal(old.status as RunStatus);
    if (!open) {
      const other = await findOpenRun(tx, old.instanceId);
      if (other) {
        throw new DexError(
          "FAILED_PRECONDITION",
          `instance id "${old.instanceId}" already has an open run ${other.id}; reset that run, or terminate it first`,
          { details: runAlreadyOpen(old.instanceId, other.id) },
        );
      }
    }
    const history = (await readHistory(tx, old.id, 0, HISTORY_READ_LIMIT)).map(decodeEvent);
    const plan = planReset(history, request.point);
    const missing = await missingActivityQueues(tx, [...new Set(plan.activities.map((a) => a.queue))]);
    if (missing.length > 0) {
      throw new DexError(
        "FAILED_PRECONDITION",
        `the kept history has activities in flight on activity task queue(s) ${missing.map((q) => `"${q}"`).join(", ")}, ` +
          `which no longer exist; create them (TaskQueueService.CreateTaskQueue) and reset again, or reset to an earlier point`,
      );
    }
    const newRunId = uuidv7();
    const keptUpdateIds = acceptedUpdateIds(history.slice(0, plan.keepThrough));
    const redeliveredEvents = await redeliverInputs(tx, { oldRunId: old.id, newRunId, keepThrough: plan.keepThrough, keptUpdateIds });
    if (open) {
      const reason = `reset to run ${newRunId}${request.reason === "" ? "" : `: ${request.reason}`}`;
      await terminateLocked(engine, tx, effects, old, undefined, terminationRecords(reason, newRunId));
      effects.wakeRun(old.id);
    }
    const run = resetRunRow(old, history[0]!, newRunId, open, await readRunTimeouts(tx, old.id));
    const outcome = await insertRun(tx, run);
    if (outcome.outcome === "open_run_exists") throw new Retry(); // a start won since findOpenRun: look again
    if (outcome.outcome === "queue_missing") {
      throw new DexError(
        "FAILED_PRECONDITION",
        `workflow task queue "${old.taskQueue}" of run ${old.id} no longer exists; create it (TaskQueueService.CreateTaskQueue) and reset again`,
      );
    }
    if (outcome.outcome !== "started") throw new Error(`ResetRun: unexpected start outcome ${outcome.outcome}`);
    await copyKeptHistory(tx, { oldRunId: old.id, newRunId, keepThrough: plan.keepThrough });
    const target = { id: newRunId, instanceId: old.instanceId, workflowName: old.workflowName, taskQueue: old.taskQueue, priority: old.priority };
    await insertActivityTasks(tx, target, plan.activities);
    await insertTimers(tx, target, plan.timers);
    await insertResetLink(tx, { newRunId, oldRunId: old.id, requestId: request.requestId, reason: request.reason, keepThrough: plan.keepThrough });
    effects.wakeQueue(QueueType.WORKFLOW, old.taskQueue);
    for (const activity of plan.activities) effects.wakeQueue(QueueType.ACTIVITY, activity.queue);
    for (const timer of plan.timers) effects.timerAt(timer.fireAt);
    effects.wakeRun(newRunId, { ended: false });
    engine.logger.info("run reset", { runId: old.id, workflow: old.workflowName, oldRunId: old.id, newRunId, keptEvents: plan.keepThrough, reason: request.reason });
    return { runId: newRunId, created: true, keptEvents: plan.keepThrough, redeliveredEvents };
  });
}

/** The update ids a (kept) history accepted: the new run holds them, and answers them. */
function acceptedUpdateIds(history: readonly HistoryEvent[]): string[] {
  return history.flatMap((e) => (e.attributes.case === "updateAccepted" ? [e.attributes.value.updateId] : []));
}

/**
 * What reset does not do (documented in decision 0026): a child run's end is
 * owed to its parent, which waits for that run's chain, not a reset's; a run
 * waiting in its concurrency key's line holds no history worth keeping; an
 * ended keyed run would have to wait in line with its re-scheduled work,
 * which a waiting run must not have.
 */
function refuseUnsupported(old: LockedRun): void {
  if (old.parentRunId !== null) {
    throw new DexError("FAILED_PRECONDITION", `run ${old.id} is a child of run ${old.parentRunId}; reset the parent instead`);
  }
  if (old.concurrencyWaiting) {
    throw new DexError(
      "FAILED_PRECONDITION",
      `run ${old.id} is still waiting for a slot of concurrency key "${old.concurrencyKey}" and has not run; there is nothing to reset`,
    );
  }
  if (old.concurrencyKey !== null && isTerminal(old.status as RunStatus)) {
    throw new DexError(
      "FAILED_PRECONDITION",
      `run ${old.id} has ended and has concurrency key "${old.concurrencyKey}"; resetting an ended run with a concurrency key ` +
        `is not supported: start a new run instead`,
    );
  }
}

/**
 * The new run as the start statement takes it: the old run's start, with
 * run_started copied (so replay sees what the old run saw) and marked with
 * reset_from_run_id. An open keyed run hands its slot to the new run (as
 * continue-as-new does): the old one is terminated in the same transaction.
 */
function resetRunRow(
  old: LockedRun,
  oldStarted: HistoryEvent,
  newRunId: string,
  oldHeldSlot: boolean,
  timeouts: { runTimeoutMs: number | null; workflowTaskTimeoutMs: number | null },
) {
  if (oldStarted.attributes.case !== "runStarted") throw new Error(`run ${old.id}: event 1 is not run_started`);
  const started = oldStarted.attributes.value;
  const run = newRun(
    {
      workflowName: old.workflowName,
      instanceId: old.instanceId,
      taskQueue: old.taskQueue,
      input: started.input,
      labels: started.labels,
      priority: old.priority,
      requestId: "",
      reusePolicy: ReusePolicy.ALLOW,
      concurrencyKey: old.concurrencyKey,
      concurrencyLimit: old.concurrencyLimit,
      // The new run's run timeout counts from its own start, as continue-as-new's does.
      runTimeoutMs: timeouts.runTimeoutMs,
      workflowTaskTimeoutMs: timeouts.workflowTaskTimeoutMs,
    },
    { runId: newRunId, holdsSlot: oldHeldSlot },
  );
  run.startedEvent = toBinary(
    HistoryEventSchema,
    create(HistoryEventSchema, { attributes: { case: "runStarted", value: { ...started, resetFromRunId: old.id } } }),
  );
  return run;
}

/** The run's place in reset chains, for DescribeRun. */
export async function resetLinks(engine: Engine, runId: string): Promise<ResetLinks> {
  return readResetLinks(engine.sql, runId);
}

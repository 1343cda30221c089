/**
 * Updates: a client asks a running workflow to act and answer
 * (docs/decisions/0024-updates.md, docs/worker-protocol.md "Updates").
 *
 * Life of an update, each step one transaction that holds the run row lock:
 * 1. UpdateRun puts `update_accepted{update_id, name, args}` in the run's
 *    inbox (dedup key `update:<id>`) and gives the run a workflow task;
 * 2. the worker validates it before the workflow sees it. Rejected: the
 *    completion names it in `rejected_updates`, its inbox row is deleted (so
 *    history never shows it) and the failure is kept in
 *    dex.update_rejections. Accepted: the row moves into history with the
 *    block like any input, and the handler runs as workflow code;
 * 3. when the handler settles, `complete_update` records `update_completed`
 *    (dedup key `update-completed:<id>`: at most once, the index holds it).
 * The caller waits for the outcome (a long poll on the run's changes) and,
 * at its deadline, hears `still_running`; calling again with the same id
 * resumes the wait, as does a caller after a server restart: everything is
 * in the database, nothing in memory.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { DexError, FailureSchema, HistoryEventSchema, type Failure, type Payload } from "@dex/proto";
import { lockRun } from "../store/completion-locks.js";
import type { TransactionSql } from "../store/db.js";
import { resolveRunId } from "../store/lifecycle.js";
import { getRun } from "../store/runs.js";
import { acceptedUpdates, handedOutUpdates, insertUpdateRequest, openRunOfChain, readUpdateState, removeRejectedUpdates, updateClaim } from "../store/updates.js";
import type { Engine } from "./context.js";
import { inTransaction } from "./effects.js";
import { encodeEvent, encodeFailure, type EncodedEvent } from "./events.js";
import { longPoll } from "./long-poll.js";
import { DedupKind, dedupKey, isTerminal, QueueType, RunStatus } from "./model.js";
import type { RunSelector } from "./runs.js";
import { failureField, invalid, payloadField, requireString } from "./validation.js";
import type { Limits } from "./limits.js";

/** Dedup key of an update's inbox row, and of its `update_accepted` event once in history. */
export function updateRequestKey(updateId: string): string {
  return dedupKey(DedupKind.UPDATE, updateId);
}

/** Dedup key of an update's `update_completed` event. */
export function updateCompletedKey(updateId: string): string {
  return dedupKey(DedupKind.UPDATE_COMPLETED, updateId);
}

/** Re-check interval of update waiters on another server than the completion's (no NOTIFY per append). */
const UPDATE_FALLBACK_MS = 1_000;

export type UpdateOutcome =
  | { kind: "result"; result: Payload | undefined }
  | { kind: "failure"; failure: Failure }
  | { kind: "rejection"; failure: Failure }
  | { kind: "stillRunning" };

export interface UpdateRequest {
  selector: RunSelector;
  name: string;
  args: Payload | undefined;
  updateId: string;
  /** Wait for the outcome until then (ms since epoch). */
  waitUntil: number;
}

export async function updateRun(
  engine: Engine,
  request: UpdateRequest,
  signal: AbortSignal,
): Promise<{ runId: string; outcome: UpdateOutcome }> {
  const keys = {
    requested: updateRequestKey(request.updateId),
    completed: updateCompletedKey(request.updateId),
    updateId: request.updateId,
  };
  const home = await findOrAsk(engine, request, keys);
  if (home.known) return { runId: home.runId, outcome: home.known };
  let runId = home.runId;
  // "moved": the update went on to another run of the chain; wait on that run from now on.
  const check = async (): Promise<UpdateOutcome | "moved" | undefined> => {
    const outcome = await readOutcome(engine, runId, keys);
    if (outcome) return outcome;
    const run = await getRun(engine.sql, { runId });
    if (!run) throw new DexError("NOT_FOUND", `run ${runId}, which took update "${request.updateId}", was deleted; its outcome is gone`);
    if (!isTerminal(run.status as RunStatus)) return undefined;
    // Continue-as-new and ResetRun move an update the run holds to the next run of the chain, in the
    // transaction that ends the run: once the end is visible, so is the move. Follow it.
    const claim = await updateClaim(engine.sql, runId, request.updateId);
    if (claim?.live && claim.runId !== runId) {
      runId = claim.runId;
      return (await readOutcome(engine, runId, keys)) ?? "moved";
    }
    // Read again: the outcome may have been written by the very completion that ended the run.
    const state = await readOutcome(engine, runId, keys, run.status as RunStatus);
    if (state) return state;
    // A server before 0016 continued the run as new and dropped the update: ask the chain's open run.
    if (claim && !claim.live) {
      runId = await askChainAgain(engine, runId, request, keys.requested);
      return "moved";
    }
    throw new DexError(
      "FAILED_PRECONDITION",
      `run ${runId} ended (${run.status}) before update "${request.updateId}" completed; its handler's outcome will never be known. ` +
        `A workflow that should finish its updates first can wait for ctx.allHandlersFinished() before it returns`,
    );
  };
  for (;;) {
    const outcome = await longPoll({
      subscribe: () => engine.wakeups.subscribeRun(runId),
      check,
      until: request.waitUntil,
      fallbackMs: UPDATE_FALLBACK_MS,
      signal,
      closing: () => engine.wakeups.isClosed,
    });
    // Subscribe to the run the update moved to before checking it (a wake in between is not lost).
    if (outcome === "moved") continue;
    return { runId, outcome: outcome ?? { kind: "stillRunning" } };
  }
}

/** How many times a request through an instance id follows the instance to its next run (each: a run ended meanwhile). */
const MAX_HOPS = 5;

/**
 * Step 1: the run of the chain that holds the update and its outcome if
 * already known (a resumed wait, even on a run that has ended since, or a
 * retry through the instance id after continue-as-new or a reset:
 * dex.update_ids, per chain); else the resolved open run gets the request,
 * claimed for its chain. A stale claim (left by a server before 0016,
 * store/updates.ts staleClaim) counts as none: the chain's open run is asked.
 */
async function findOrAsk(
  engine: Engine,
  request: UpdateRequest,
  keys: { requested: string; completed: string; updateId: string },
): Promise<{ runId: string; known?: UpdateOutcome }> {
  for (let hop = 1; ; hop++) {
    const resolved = await resolveRunId(engine.sql, request.selector);
    if (!resolved) throw notFound(request.selector);
    const claim = await updateClaim(engine.sql, resolved, request.updateId);
    // Without a live claim, the resolved run itself: it may hold the update from before the claims (migration 0016).
    const runId = claim?.live ? claim.runId : resolved;
    const known = await readOutcome(engine, runId, keys);
    if (known) return { runId, known };
    // A run of the chain took it: wait on that run (the long poll follows it if it moves on).
    if (claim?.live) return { runId };
    if (claim) return { runId: await askChainAgain(engine, resolved, request, keys.requested) };
    try {
      return { runId: await askRun(engine, runId, request, keys.requested) };
    } catch (err) {
      // Through an instance id the open run may have ended (continue-as-new) since it was resolved: go to the next one.
      if (err instanceof RunEnded && "instanceId" in request.selector && hop < MAX_HOPS) continue;
      throw err instanceof RunEnded ? err.error : err;
    }
  }
}

/**
 * An update whose claim is stale (its run continued as new on a server before
 * 0016, which dropped the update, or is gone): asked again of the open run of
 * `runId`'s chain, as if never claimed (docs/upgrades.md, 0016). The chain's
 * open run may end between the look-up and its lock: look again, a few times.
 */
async function askChainAgain(engine: Engine, runId: string, request: UpdateRequest, dedupKey: string): Promise<string> {
  for (let hop = 1; ; hop++) {
    const open = await openRunOfChain(engine.sql, runId);
    if (!open) {
      throw new DexError(
        "FAILED_PRECONDITION",
        `update "${request.updateId}" was lost by a server older than migration 0016 (its run continued as new and dropped it, ` +
          `or was deleted), and the chain of run ${runId} has no open run to ask again; start a new run and send the update there`,
      );
    }
    try {
      return await askRun(engine, open, request, dedupKey);
    } catch (err) {
      if (err instanceof RunEnded && hop < MAX_HOPS) continue;
      throw err instanceof RunEnded ? err.error : err;
    }
  }
}

class RunEnded extends Error {
  constructor(readonly error: DexError) {
    super(error.message);
  }
}

/**
 * Under the run lock: an open run gets the request (once per update id and
 * chain: a retry finds the claim and adds nothing). Returns the run that holds
 * the update: this one, or the run of the chain that claimed it first.
 */
async function askRun(engine: Engine, runId: string, update: UpdateRequest, dedupKey: string): Promise<string> {
  return inTransaction(engine, async (tx, effects) => {
    const run = await lockRun(tx, runId);
    if (!run) throw notFound(update.selector);
    if (isTerminal(run.status as RunStatus)) {
      throw new RunEnded(new DexError("FAILED_PRECONDITION", `run ${run.id} has already ended (${run.status}); it cannot receive updates`));
    }
    const event = encodeEvent({ case: "updateAccepted", value: { updateId: update.updateId, name: update.name, args: update.args } });
    const inserted = await insertUpdateRequest(tx, run, { event: event.event, dedupKey, updateId: update.updateId });
    if (inserted.taskCreated) effects.wakeQueue(QueueType.WORKFLOW, run.taskQueue);
    return inserted.home;
  });
}

/**
 * What the caller hears: the handler's outcome, or the rejection. `ended`: the
 * run has ended; an update it accepted and never completed because the run
 * continued as new is answered with a failure of type WorkflowContinuedAsNew,
 * as Temporal does, so the caller knows the handler will not finish and that
 * the chain goes on (decision 0031).
 */
async function readOutcome(
  engine: Engine,
  runId: string,
  keys: { requested: string; completed: string; updateId: string },
  ended?: RunStatus,
): Promise<UpdateOutcome | undefined> {
  const state = await readUpdateState(engine.sql, runId, keys);
  if (state.rejection) return { kind: "rejection", failure: fromBinary(FailureSchema, state.rejection) };
  if (!state.completed) {
    if (ended === RunStatus.CONTINUED_AS_NEW && state.accepted) return { kind: "failure", failure: continuedBeforeCompleted(runId, keys.updateId) };
    return undefined;
  }
  const event = fromBinary(HistoryEventSchema, state.completed);
  if (event.attributes.case !== "updateCompleted") throw new Error(`run ${runId}: ${keys.completed} is not an update_completed event`);
  const { result, failure } = event.attributes.value;
  return failure ? { kind: "failure", failure } : { kind: "result", result };
}

function continuedBeforeCompleted(runId: string, updateId: string): Failure {
  return create(FailureSchema, {
    type: "WorkflowContinuedAsNew",
    message:
      `run ${runId} continued as new before the handler of update "${updateId}" finished; it never will. ` +
      `Send the update again with a new update id to reach the new run, or have the workflow wait for ` +
      `ctx.allHandlersFinished() before it continues as new`,
  });
}

function notFound(selector: RunSelector): DexError {
  return new DexError(
    "NOT_FOUND",
    "runId" in selector ? `run ${selector.runId} not found` : `no run of instance id "${selector.instanceId}" found`,
  );
}

/** A complete_update command, validated, as its history event (dedup key: at most once per run). */
export function planCompleteUpdate(
  field: string,
  value: { updateId: string; result?: Payload | undefined; failure?: Failure | undefined },
  limits: Limits,
  seen: Set<string>,
): EncodedEvent {
  const updateId = requireString(`${field}.update_id`, value.updateId);
  if (seen.has(updateId)) throw invalid(`${field}.update_id "${updateId}" is completed by an earlier command of this task; complete each update once`);
  seen.add(updateId);
  if (value.result && value.failure) throw invalid(`${field}: set result or failure, not both`);
  payloadField(`${field}.result`, value.result, limits);
  failureField(`${field}.failure`, value.failure, limits);
  return encodeEvent(
    { case: "updateCompleted", value: { updateId, result: value.result, failure: value.failure } },
    { dedupKey: updateCompletedKey(updateId) },
  );
}

/**
 * The checks of a completion's complete_update commands that need the
 * database (only run when it has some): each names an update accepted
 * earlier (in history) or in this task (handed out and not rejected), and
 * not completed before.
 */
export async function checkCompletedUpdates(
  tx: TransactionSql,
  runId: string,
  handedOut: readonly number[],
  updateIds: readonly string[],
): Promise<void> {
  if (updateIds.length === 0) return;
  const rows = await acceptedUpdates(tx, runId, handedOut, updateIds.map((id) => ({ id, requested: updateRequestKey(id), completed: updateCompletedKey(id) })));
  for (const row of rows) {
    if (!row.accepted) throw invalid(`complete_update names update "${row.update_id}", which this run has not accepted`);
    if (row.completed) throw invalid(`complete_update names update "${row.update_id}", which was completed already; complete each update once`);
  }
}

export interface UpdateRejection {
  updateId: string;
  failure: Failure;
}

/** Validates CompleteWorkflowTaskRequest.rejected_updates (before anything is written). */
export function rejectionsField(rejections: ReadonlyArray<{ updateId: string; failure?: Failure | undefined }>, limits: Limits): UpdateRejection[] {
  if (rejections.length > 10_000) throw invalid(`rejected_updates has ${rejections.length} entries, at most 10000`);
  const seen = new Set<string>();
  return rejections.map((r, i) => {
    const field = `rejected_updates[${i}]`;
    const updateId = requireString(`${field}.update_id`, r.updateId);
    if (seen.has(updateId)) throw invalid(`${field}.update_id "${updateId}" is rejected twice; name each update once`);
    seen.add(updateId);
    const failure = failureField(`${field}.failure`, r.failure, limits);
    if (!failure) throw invalid(`${field}.failure is required: say why the update was rejected`);
    return { updateId, failure };
  });
}

/**
 * Inside the completion's transaction, after its locks: deletes the rejected
 * updates' inbox rows (they must be among those handed out with the task) and
 * keeps the rejections; returns the handed-out ids left to move into history.
 */
export async function applyRejections(
  tx: TransactionSql,
  runId: string,
  handedOut: readonly number[],
  rejections: readonly UpdateRejection[],
): Promise<number[]> {
  const removed = await removeRejectedUpdates(
    tx,
    runId,
    handedOut,
    rejections.map((r) => ({ updateId: r.updateId, dedupKey: updateRequestKey(r.updateId), failure: encodeFailure(r.failure)! })),
  );
  for (const r of rejections) {
    if (!removed.has(updateRequestKey(r.updateId))) {
      throw invalid(`rejected_updates names update "${r.updateId}", which was not handed out with this workflow task`);
    }
  }
  const gone = new Set(removed.values());
  return handedOut.filter((id) => !gone.has(id));
}

/** Most undelivered updates one continue_as_new may name (as many as it may carry events). */
const MAX_UNDELIVERED_UPDATES = 10_000;

/** continue_as_new's `undelivered_update_ids`, validated without the database (decision 0031). */
export interface UndeliveredUpdates {
  /** The field, for messages: `commands[i].continue_as_new.undelivered_update_ids`. */
  field: string;
  updateIds: string[];
}

export function undeliveredUpdatesField(field: string, updateIds: readonly string[]): UndeliveredUpdates {
  if (updateIds.length > MAX_UNDELIVERED_UPDATES) throw invalid(`${field} has ${updateIds.length} ids, at most ${MAX_UNDELIVERED_UPDATES}`);
  const seen = new Set<string>();
  for (const [i, id] of updateIds.entries()) {
    requireString(`${field}[${i}]`, id);
    if (seen.has(id)) throw invalid(`${field}[${i}] "${id}" appears twice; name each undelivered update once`);
    seen.add(id);
  }
  return { field, updateIds: [...updateIds] };
}

/**
 * Inside the completion's transaction, after its locks (and after rejections
 * left the inbox): checks that each undelivered update was handed out with
 * this task, and returns the handed-out ids left to move into history. The
 * rows set aside stay in the old inbox, so continue-as-new's hand-over moves
 * them to the new run with the unseen inputs and re-points their claims
 * (store/lifecycle.ts handOverInbox): the update was never seen, so it is
 * treated as never handed out.
 */
export async function setAsideUndelivered(
  tx: TransactionSql,
  runId: string,
  handedOut: readonly number[],
  undelivered: UndeliveredUpdates,
  completedInThisTask: readonly string[] = [],
): Promise<number[]> {
  // Checked first, so the message names the field at fault rather than complete_update's.
  const completed = new Set(completedInThisTask);
  for (const [i, id] of undelivered.updateIds.entries()) {
    if (completed.has(id)) {
      throw invalid(`${undelivered.field}[${i}] names update "${id}", which a complete_update of this completion also answers: an update the code completed was delivered; drop it from ${undelivered.field}`);
    }
  }
  const found = await handedOutUpdates(tx, runId, handedOut, undelivered.updateIds.map(updateRequestKey));
  for (const [i, id] of undelivered.updateIds.entries()) {
    if (!found.has(updateRequestKey(id))) {
      throw invalid(
        `${undelivered.field}[${i}] names update "${id}", which was not handed out with this workflow task (or was rejected in this ` +
          `completion); name only updates of this task's new_events that the code did not see`,
      );
    }
  }
  const aside = new Set(found.values());
  return handedOut.filter((id) => !aside.has(id));
}

/**
 * ScheduleService's operations: each one that changes a schedule locks its
 * row (store/schedules.ts lockSchedule), works through ScheduleFiring
 * (schedules-firing.ts), saves the state in the same transaction, and after
 * the commit wakes the schedule loops: this server's at once, the others'
 * through the one wake-up mechanism (engine/notifier.ts), so a schedule
 * created or changed anywhere is due on every server's loop without polling.
 */
import { DexError, type Payload } from "@dex/proto";
import { uuidv7 } from "uuidv7";
import type { TransactionSql } from "../store/db.js";
import { schedulesWakeupPayload } from "../store/notify.js";
import {
  databaseNow,
  deleteSchedule as deleteScheduleRow,
  insertSchedule,
  listSchedules as listScheduleRows,
  lockSchedule,
  readSchedule,
  saveScheduleDefinition,
  saveScheduleState,
  type ScheduleRecord,
} from "../store/schedules.js";
import type { Engine } from "./context.js";
import { inTransaction, type Effects } from "./effects.js";
import { decodePayload, encodePayload } from "./events.js";
import { QueueType } from "./model.js";
import { notifyAfterCommit } from "./notifier.js";
import { ScheduleFiring, MAX_TIMES_PER_PASS, type FireOutcome, type OverlapPolicy, type ScheduleActionDef } from "./schedules-firing.js";
import { CompiledSpec, jitterOf, validateSpec, type ScheduleSpec } from "./schedules-spec.js";
import { queueExists } from "./task-queues.js";
import { invalid } from "./validation.js";

/** A validated definition (the api maps the proto to this). */
export interface ScheduleDefinition {
  spec: ScheduleSpec;
  action: ScheduleActionDef;
  input: Payload | undefined;
  overlapPolicy: OverlapPolicy;
  catchupWindowMs: number;
}

export const MAX_BACKFILL_TIMES = 1_000;
/** How many next firings describe shows. */
const NEXT_TIMES = 5;

/** Per engine: what to wake when a schedule changed here (server.ts registers its loop). */
const localLoops = new WeakMap<Engine, () => void>();

export function onScheduleChange(engine: Engine, wake: () => void): void {
  localLoops.set(engine, wake);
}

/** A schedule's due time may have moved: wake this server's loop now and the others' after the commit. */
function announceChange(engine: Engine): void {
  localLoops.get(engine)?.();
  notifyAfterCommit(engine, [schedulesWakeupPayload(engine.origin)]);
}

function notFound(id: string): DexError {
  return new DexError("NOT_FOUND", `schedule "${id}" does not exist; list schedules with ListSchedules (dex schedule list)`);
}

async function requireWorkflowQueue(engine: Engine, queue: string): Promise<void> {
  if (await queueExists(engine, QueueType.WORKFLOW, queue)) return;
  throw new DexError(
    "NOT_FOUND",
    `schedule.action.task_queue: workflow task queue "${queue}" does not exist; create it first (dex queue create ${queue} --type workflow)`,
  );
}

export async function createSchedule(
  engine: Engine,
  request: { id: string; definition: ScheduleDefinition; paused: boolean; note: string; remainingActions: number | null },
): Promise<void> {
  const d = request.definition;
  validateSpec(d.spec);
  await requireWorkflowQueue(engine, d.action.taskQueue);
  const nowMs = await databaseNow(engine.sql);
  const next = request.remainingActions === 0 ? null : new CompiledSpec(d.spec).nextAfter(nowMs);
  const created = await insertSchedule(engine.sql, {
    id: request.id,
    generation: uuidv7(),
    spec: d.spec,
    action: d.action,
    input: encodePayload(d.input),
    overlapPolicy: d.overlapPolicy,
    catchupWindowMs: d.catchupWindowMs,
    paused: request.paused,
    note: request.note,
    remainingActions: request.remainingActions,
    nextNominalAt: next === null ? null : new Date(next),
    dueAt: next === null || request.paused ? null : new Date(next + jitterOf(request.id, next, d.spec.jitterMs)),
  });
  if (!created) {
    throw new DexError("ALREADY_EXISTS", `schedule "${request.id}" already exists; change it with UpdateSchedule, or delete it first`);
  }
  engine.logger.info("schedule created", { scheduleId: request.id });
  announceChange(engine);
}

/** Runs `fn` on the locked row and saves the state it leaves; NOT_FOUND without the row. */
async function withSchedule<T>(
  engine: Engine,
  id: string,
  fn: (firing: ScheduleFiring, tx: TransactionSql) => Promise<T>,
): Promise<T> {
  const result = await inTransaction(engine, async (tx, effects: Effects) => {
    const row = await lockSchedule(tx, id);
    if (!row) throw notFound(id);
    const firing = new ScheduleFiring(engine, tx, effects, row, await databaseNow(tx));
    const value = await fn(firing, tx);
    firing.state.dueAt = firing.nextDueAt();
    await saveScheduleState(tx, id, firing.state, true);
    return value;
  });
  announceChange(engine);
  return result;
}

export async function updateSchedule(
  engine: Engine,
  request: { id: string; definition: ScheduleDefinition; remainingActions: number | null | undefined },
): Promise<void> {
  const d = request.definition;
  validateSpec(d.spec);
  await requireWorkflowQueue(engine, d.action.taskQueue);
  await withSchedule(engine, request.id, async (firing, tx) => {
    await saveScheduleDefinition(tx, request.id, {
      spec: d.spec,
      action: d.action,
      input: encodePayload(d.input),
      overlapPolicy: d.overlapPolicy,
      catchupWindowMs: d.catchupWindowMs,
    });
    // The new spec counts from now: times of the old spec not yet fired are dropped.
    const s = firing.state;
    if (request.remainingActions !== undefined) s.remainingActions = request.remainingActions;
    firing.useSpec(d.spec);
    const next = firing.spec.nextAfter(firing.nowMs);
    s.nextNominalAt = next === null ? null : new Date(next);
  });
  engine.logger.info("schedule updated", { scheduleId: request.id });
}

export async function pauseSchedule(engine: Engine, request: { id: string; note: string }): Promise<void> {
  await withSchedule(engine, request.id, async ({ state, nowMs }) => {
    state.note = request.note;
    if (state.paused) return;
    state.paused = true;
    state.pausedAt = new Date(nowMs);
  });
}

/**
 * Resumes from the next nominal time after now: the times that passed while
 * paused are counted as skipped (PAUSED), not caught up.
 */
export async function resumeSchedule(engine: Engine, request: { id: string; note: string }): Promise<void> {
  await withSchedule(engine, request.id, async (firing) => {
    const { state, nowMs, spec } = firing;
    state.note = request.note;
    if (!state.paused) return;
    state.paused = false;
    state.pausedAt = null;
    let skipped = 0;
    let last: number | null = null;
    let next = state.nextNominalAt?.getTime() ?? null;
    while (next !== null && next <= nowMs && skipped < MAX_TIMES_PER_PASS * 10) {
      skipped++;
      last = next;
      next = spec.nextAfter(next);
    }
    if (next !== null && next <= nowMs) next = spec.nextAfter(nowMs);
    if (last !== null) {
      state.pausedSkipped += skipped;
      firing.skip(last, "paused", skipped);
    }
    state.nextNominalAt = state.nextNominalAt === null ? null : next === null ? null : new Date(next);
  });
}

export interface TriggerOutcome extends FireOutcome {
  nominalMs: number;
}

/** Fires now; with a request id, a retry answers the first call's run while it is among the recent actions. */
export async function triggerSchedule(
  engine: Engine,
  request: { id: string; overlapPolicy: OverlapPolicy | undefined; requestId: string },
): Promise<TriggerOutcome> {
  return withSchedule(engine, request.id, async (firing) => {
    if (request.requestId !== "") {
      const earlier = firing.state.recentActions.find((a) => a.requestId === request.requestId);
      if (earlier) return { runId: earlier.runId, started: false, buffered: false, nominalMs: earlier.nominal };
    }
    const outcome = await firing.fire(firing.nowMs, "triggered", request.overlapPolicy ?? (firing.row.overlapPolicy as OverlapPolicy));
    if (outcome.started && request.requestId !== "") firing.state.recentActions[0]!.requestId = request.requestId;
    return { ...outcome, nominalMs: firing.nowMs };
  });
}

/** Fires each nominal time of [fromMs, toMs]; a time this schedule already started a run for starts nothing. */
export async function backfillSchedule(
  engine: Engine,
  request: { id: string; fromMs: number; toMs: number; overlapPolicy: OverlapPolicy | undefined },
): Promise<{ started: number; buffered: number; skipped: number }> {
  if (request.toMs < request.fromMs) throw invalid("end_time must not be before start_time");
  return withSchedule(engine, request.id, async (firing) => {
    const times = firing.spec.between(request.fromMs, request.toMs, MAX_BACKFILL_TIMES + 1);
    if (times.length > MAX_BACKFILL_TIMES) {
      throw invalid(`the range holds more than ${MAX_BACKFILL_TIMES} nominal times; backfill it in smaller ranges`);
    }
    const counts = { started: 0, buffered: 0, skipped: 0 };
    for (const at of times) {
      const outcome = await firing.fire(at, "backfill", request.overlapPolicy ?? (firing.row.overlapPolicy as OverlapPolicy));
      if (outcome.started) counts.started++;
      else if (outcome.buffered) counts.buffered++;
      else counts.skipped++;
    }
    return counts;
  });
}

export async function deleteSchedule(engine: Engine, id: string): Promise<void> {
  if (!(await deleteScheduleRow(engine.sql, id))) throw notFound(id);
  engine.logger.info("schedule deleted", { scheduleId: id });
  announceChange(engine);
}

export interface ScheduleView {
  record: ScheduleRecord;
  spec: ScheduleSpec;
  action: ScheduleActionDef;
  input: Payload | undefined;
  /** Next due times (nominal + jitter), epoch ms. */
  nextDueMs: number[];
}

export async function describeSchedule(engine: Engine, id: string): Promise<ScheduleView> {
  const record = await readSchedule(engine.sql, id);
  if (!record) throw notFound(id);
  return view(record);
}

export async function listSchedules(engine: Engine, afterId: string | null, limit: number): Promise<ScheduleView[]> {
  return (await listScheduleRows(engine.sql, afterId, limit)).map(view);
}

function view(record: ScheduleRecord): ScheduleView {
  const spec = record.spec as ScheduleSpec;
  const compiled = new CompiledSpec(spec);
  const nextDueMs: number[] = [];
  let remaining = record.remainingActions ?? Number.POSITIVE_INFINITY;
  let next = record.paused ? null : (record.nextNominalAt?.getTime() ?? null);
  while (next !== null && nextDueMs.length < NEXT_TIMES && remaining > 0) {
    nextDueMs.push(next + jitterOf(record.id, next, spec.jitterMs));
    remaining--;
    next = compiled.nextAfter(next);
  }
  return { record, spec, action: record.action as ScheduleActionDef, input: decodePayload(record.input), nextDueMs };
}

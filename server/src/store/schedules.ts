/**
 * Schedule SQL (dex.schedules, migration 0007): the firing loop's probe and
 * claim, and the reads and writes of ScheduleService.
 *
 * Locking. A schedule's whole firing state is its one row, and every change
 * to it happens under that row's lock, FOR UPDATE, taken first in its
 * transaction (lock order: schedule row, then whatever the start statement,
 * store/runs.ts insertRuns, takes; nothing takes them the other way round).
 * The loop claims a due row FOR UPDATE SKIP LOCKED: a row another server is
 * firing is skipped, never waited for, and once that server commits, the row's
 * due_at has moved past now(), so it is not due any more. The run is started
 * in the same transaction that advances next_nominal_at, so either both
 * happened or neither did: a firing is never lost and never done twice. The
 * run's instance id and request id (derived from the schedule and the nominal
 * time) are a second fence in the database: if the same nominal time were
 * handled again, the start would answer the first run (same request id) or
 * find it open, and start nothing.
 * API calls (trigger, backfill, pause, update) lock the row FOR UPDATE and
 * wait: they are rare and short, and must not be skipped.
 *
 * Idle cost: probeNextDue is one index probe of schedules_due (a partial
 * index of rows with a due_at), whatever the number of schedules.
 */
import type { Queryable, TransactionSql } from "./db.js";
import { openStatuses } from "./vocabulary.js";

/** A buffered firing, as dex.schedules.buffered holds it. */
export interface BufferedFiring {
  /** Nominal time, epoch ms. */
  at: number;
  kind: "scheduled" | "triggered" | "backfill";
}

export interface ActionEntry {
  nominal: number;
  actual: number;
  runId: string;
  instanceId: string;
  kind: BufferedFiring["kind"];
  requestId?: string;
}

export interface SkipEntry {
  nominal: number;
  reason: "overlap" | "paused" | "catchup_window" | "task_queue_missing";
  at: number;
  count: number;
}

/** A dex.schedules row, camel-cased; times as Date, JSON parsed: its definition plus its firing state. */
export interface ScheduleRecord extends ScheduleState {
  id: string;
  generation: string;
  spec: unknown;
  action: unknown;
  input: Uint8Array | null;
  overlapPolicy: string;
  catchupWindowMs: number;
  createdAt: Date;
  updatedAt: Date;
}

const COLUMNS = `id, generation, spec, action, input, overlap_policy as "overlapPolicy",
  catchup_window_ms::float8 as "catchupWindowMs", paused, note, paused_at as "pausedAt",
  remaining_actions as "remainingActions", next_nominal_at as "nextNominalAt", due_at as "dueAt", buffered,
  last_run_id as "lastRunId", cancel_requested_run_id as "cancelRequestedRunId", recent_actions as "recentActions",
  recent_skips as "recentSkips", action_count::float8 as "actionCount", overlap_skipped::float8 as "overlapSkipped",
  paused_skipped::float8 as "pausedSkipped", catchup_window_missed::float8 as "catchupWindowMissed",
  created_at as "createdAt", updated_at as "updatedAt"`;

/** What create writes; the state columns start at their defaults. */
export interface NewSchedule {
  id: string;
  generation: string;
  spec: unknown;
  action: unknown;
  input: Uint8Array | null;
  overlapPolicy: string;
  catchupWindowMs: number;
  paused: boolean;
  note: string;
  remainingActions: number | null;
  nextNominalAt: Date | null;
  dueAt: Date | null;
}

/** False when a schedule with that id exists. */
export async function insertSchedule(sql: Queryable, s: NewSchedule): Promise<boolean> {
  const rows = await sql`
    insert into dex.schedules (id, generation, spec, action, input, overlap_policy, catchup_window_ms, paused, note,
                               paused_at, remaining_actions, next_nominal_at, due_at)
    values (${s.id}, ${s.generation}::uuid, ${sql.json(s.spec as never)}, ${sql.json(s.action as never)},
            ${s.input ? Buffer.from(s.input) : null}, ${s.overlapPolicy}, ${s.catchupWindowMs}, ${s.paused}, ${s.note},
            ${s.paused ? sql`now()` : null}, ${s.remainingActions}, ${s.nextNominalAt}, ${s.dueAt})
    on conflict (id) do nothing
    returning id`;
  return rows.length === 1;
}

/** The row, locked FOR UPDATE (waits for a firing in flight); undefined when there is none. */
export async function lockSchedule(tx: TransactionSql, id: string): Promise<ScheduleRecord | undefined> {
  const [row] = await tx<ScheduleRecord[]>`select ${tx.unsafe(COLUMNS)} from dex.schedules where id = ${id} for update`;
  return row;
}

/**
 * The loop's claim: the most overdue due row that no other transaction holds,
 * locked until the caller's transaction ends (see the header).
 */
export async function claimDueSchedule(tx: TransactionSql): Promise<ScheduleRecord | undefined> {
  const [row] = await tx<ScheduleRecord[]>`
    select ${tx.unsafe(COLUMNS)} from dex.schedules
    where due_at <= now() order by due_at limit 1
    for update skip locked`;
  return row;
}

/** The database clock (the transaction's now(): the test clock's in a test environment). */
export async function databaseNow(sql: Queryable): Promise<number> {
  const [row] = await sql<{ now_ms: number }[]>`select (extract(epoch from now()) * 1000)::float8 as now_ms`;
  return row!.now_ms;
}

/**
 * The loop's idle probe: how long until the earliest due_at (negative when
 * something is due), and the database clock. One index probe.
 */
export async function probeNextDue(sql: Queryable): Promise<{ nextInMs: number | null; nowMs: number }> {
  const [row] = await sql<{ next_in_ms: number | null; now_ms: number }[]>`
    select (select (extract(epoch from min(due_at) - now()) * 1000)::float8 from dex.schedules where due_at is not null) as next_in_ms,
           (extract(epoch from now()) * 1000)::float8 as now_ms`;
  return { nextInMs: row?.next_in_ms ?? null, nowMs: row?.now_ms ?? Date.now() };
}

/** Whether the run is open (CREATED or RUNNING); false when it ended or no longer exists. */
export async function runIsOpen(sql: Queryable, runId: string): Promise<boolean> {
  const [row] = await sql<{ open: boolean }[]>`
    select status in ${openStatuses(sql)} as open from dex.runs where id = ${runId}::uuid`;
  return row?.open ?? false;
}

/** The firing state a transaction computed, written back under the row lock it holds. */
export interface ScheduleState {
  paused: boolean;
  note: string;
  pausedAt: Date | null;
  remainingActions: number | null;
  nextNominalAt: Date | null;
  dueAt: Date | null;
  buffered: BufferedFiring[];
  lastRunId: string | null;
  cancelRequestedRunId: string | null;
  recentActions: ActionEntry[];
  recentSkips: SkipEntry[];
  actionCount: number;
  overlapSkipped: number;
  pausedSkipped: number;
  catchupWindowMissed: number;
}

export async function saveScheduleState(tx: TransactionSql, id: string, s: ScheduleState, touched: boolean): Promise<void> {
  await tx`
    update dex.schedules set
      paused = ${s.paused}, note = ${s.note}, paused_at = ${s.pausedAt}, remaining_actions = ${s.remainingActions},
      next_nominal_at = ${s.nextNominalAt}, due_at = ${s.dueAt}, buffered = ${tx.json(s.buffered as never)},
      last_run_id = ${s.lastRunId}::uuid, cancel_requested_run_id = ${s.cancelRequestedRunId}::uuid,
      recent_actions = ${tx.json(s.recentActions as never)}, recent_skips = ${tx.json(s.recentSkips as never)},
      action_count = ${s.actionCount}, overlap_skipped = ${s.overlapSkipped}, paused_skipped = ${s.pausedSkipped},
      catchup_window_missed = ${s.catchupWindowMissed},
      updated_at = case when ${touched} then now() else updated_at end
    where id = ${id}`;
}

/** UpdateSchedule's write of the definition (state follows through saveScheduleState). */
export async function saveScheduleDefinition(
  tx: TransactionSql,
  id: string,
  d: { spec: unknown; action: unknown; input: Uint8Array | null; overlapPolicy: string; catchupWindowMs: number },
): Promise<void> {
  await tx`
    update dex.schedules set spec = ${tx.json(d.spec as never)}, action = ${tx.json(d.action as never)},
      input = ${d.input ? Buffer.from(d.input) : null}, overlap_policy = ${d.overlapPolicy},
      catchup_window_ms = ${d.catchupWindowMs}
    where id = ${id}`;
}

export async function readSchedule(sql: Queryable, id: string): Promise<ScheduleRecord | undefined> {
  const [row] = await sql<ScheduleRecord[]>`select ${sql.unsafe(COLUMNS)} from dex.schedules where id = ${id}`;
  return row;
}

/** A page of schedules in id order, after `afterId` (keyset paging on the primary key). */
export async function listSchedules(sql: Queryable, afterId: string | null, limit: number): Promise<ScheduleRecord[]> {
  return sql<ScheduleRecord[]>`
    select ${sql.unsafe(COLUMNS)} from dex.schedules
    where ${afterId === null ? sql`true` : sql`id > ${afterId}`}
    order by id limit ${limit}`;
}

/** False when there was no such schedule. Waits for a firing in flight (its row lock). */
export async function deleteSchedule(sql: Queryable, id: string): Promise<boolean> {
  const rows = await sql`delete from dex.schedules where id = ${id} returning id`;
  return rows.length === 1;
}

/**
 * Reads for DescribeRun: the run's pending workflow task, activities, event
 * waits and child runs (cold path: drizzle where it fits, SQL where the
 * question is about history). Timers are read with store/timers.ts runTimers.
 */
import { asc, eq, sql as dsql } from "drizzle-orm";
import type { Queryable } from "./db.js";
import { dedupPrefixSql, openStatuses } from "./vocabulary.js";
import { DedupKind, dedupPrefix } from "../engine/model.js";
import type { Drizzle } from "./runs.js";
import { activityTasks, workflowTasks } from "./schema.js";

export type PendingWorkflowTaskRecord = typeof workflowTasks.$inferSelect & { now: Date };
export type PendingActivityRecord = typeof activityTasks.$inferSelect & { now: Date };

export async function pendingWorkflowTask(db: Drizzle, runId: string): Promise<PendingWorkflowTaskRecord | undefined> {
  const [row] = await db
    .select({ task: workflowTasks, now: dsql<Date>`now()`.mapWith((v: string | Date) => new Date(v)) })
    .from(workflowTasks)
    .where(eq(workflowTasks.runId, runId))
    .limit(1);
  return row ? { ...row.task, now: row.now } : undefined;
}

export async function pendingActivities(db: Drizzle, runId: string): Promise<PendingActivityRecord[]> {
  const rows = await db
    .select({ task: activityTasks, now: dsql<Date>`now()`.mapWith((v: string | Date) => new Date(v)) })
    .from(activityTasks)
    .where(eq(activityTasks.runId, runId))
    .orderBy(asc(activityTasks.seq));
  return rows.map((row) => ({ ...row.task, now: row.now }));
}

/**
 * The run's `event_wait_started` events whose time-out has not reached history
 * (the timer's event carries dedup key 'timer:<seq>'; the wait's own key is
 * 'seq:<seq>'), in history order. The event id lives inside the event bytes,
 * so the caller decodes them and drops the waits whose event reached history
 * (eventKeysInHistory). Reads the run's history rows by kind: a cold path
 * (describe), bounded by the run's history.
 */
export async function eventWaitStarts(sql: Queryable, runId: string): Promise<Uint8Array[]> {
  const rows = await sql<{ event: Buffer }[]>`
    select h.event from dex.history_events h
    where h.run_id = ${runId} and h.kind = 'event_wait_started'
      and not exists (select 1 from dex.history_events t
                      where t.run_id = h.run_id and t.dedup_key = ${dedupPrefixSql(sql, DedupKind.TIMER)} || substr(h.dedup_key, ${dedupPrefix(DedupKind.SEQ).length + 1}::int))
    order by h.sequence`;
  return rows.map((r) => r.event);
}

/** Which of these dedup keys ('event:<id>') the run's history holds (index history_events_dedup). */
export async function eventKeysInHistory(sql: Queryable, runId: string, keys: string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const rows = await sql<{ dedup_key: string }[]>`
    select dedup_key from dex.history_events where run_id = ${runId} and dedup_key = any(${keys}::text[])`;
  return new Set(rows.map((r) => r.dedup_key));
}

export interface OpenChildRecord {
  seq: number;
  instanceId: string;
  runId: string;
  workflowName: string;
}

/**
 * The parent's child runs that have not ended: for each `start_child_run`
 * seq, the newest run carrying it (a child that continued as new hands the
 * seq down its chain), if that run is open. Index runs_by_parent.
 */
export async function openChildRuns(sql: Queryable, parentRunId: string): Promise<OpenChildRecord[]> {
  const rows = await sql<{ parent_seq: number; instance_id: string; id: string; workflow_name: string; status: string }[]>`
    select * from (
      select distinct on (parent_seq) parent_seq, instance_id, id, workflow_name, status
      from dex.runs where parent_run_id = ${parentRunId}
      order by parent_seq, id desc
    ) newest
    where status in ${openStatuses(sql)}
    order by parent_seq`;
  return rows.map((r) => ({ seq: r.parent_seq, instanceId: r.instance_id, runId: r.id, workflowName: r.workflow_name }));
}

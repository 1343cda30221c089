/**
 * Reads for DescribeRun: the run's pending workflow task, activities, event
 * waits and child runs (a cold path). Timers are read with store/timers.ts
 * runTimers. Each record holds what describe shows, with the database's
 * now() beside it, so "running" is judged on the database's clock.
 */
import type { Queryable } from "./db.js";
import { openStatuses } from "./vocabulary.js";

export interface PendingWorkflowTaskRecord {
  queueName: string;
  attempt: number;
  visibleAt: Date;
  leasedUntil: Date | null;
  lastFailure: Uint8Array | null;
  now: Date;
}

export interface PendingActivityRecord {
  queueName: string;
  seq: number;
  activityName: string;
  attempt: number;
  visibleAt: Date;
  leasedUntil: Date | null;
  lastFailure: Uint8Array | null;
  now: Date;
}

export async function pendingWorkflowTask(sql: Queryable, runId: string): Promise<PendingWorkflowTaskRecord | undefined> {
  const [row] = await sql<PendingWorkflowTaskRecord[]>`
    select queue_name as "queueName", attempt, visible_at as "visibleAt", leased_until as "leasedUntil",
           last_failure as "lastFailure", now() as now
    from dex.workflow_tasks where run_id = ${runId}::uuid limit 1`;
  return row;
}

export async function pendingActivities(sql: Queryable, runId: string): Promise<PendingActivityRecord[]> {
  return sql<PendingActivityRecord[]>`
    select queue_name as "queueName", seq, activity_name as "activityName", attempt, visible_at as "visibleAt",
           leased_until as "leasedUntil", last_failure as "lastFailure", now() as now
    from dex.activity_tasks where run_id = ${runId}::uuid order by seq`;
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

/**
 * ListRuns' one statement: newest first, keyset paged, every filter optional and indexed
 * (split from store/runs.ts, which keeps the start statement and the reads by id).
 */
import type postgres from "postgres";
import type { Queryable } from "./db.js";
import { idBoundsOf } from "./run-id-time.js";
import { runColumns, type RunRecord } from "./runs.js";

export interface RunFilter {
  workflowName?: string | undefined;
  statuses?: string[] | undefined;
  instanceId?: string | undefined;
  /** The run's workflow task queue. */
  taskQueue?: string | undefined;
  labels?: Record<string, string> | undefined;
  createdAfter?: Date | undefined;
  createdBefore?: Date | undefined;
  /** Keyset: only runs with a smaller id (UUIDv7: created earlier). */
  beforeId?: string | undefined;
  limit: number;
}

/**
 * Newest first. Every filter has an index: (workflow_name, id), (status, id), (instance_id, id),
 * (task_queue, id) (migration 0015), GIN labels, the primary key for time; measured with 100,000 runs in
 * docs/performance.md ("ListRuns with 100,000 runs", `pnpm bench:list-runs`).
 * The conditions present are joined into one statement: one prepared text per combination of filters.
 */
export async function listRuns(
  sql: Queryable,
  filter: RunFilter,
  clock: { idsFollowCreatedAt: boolean } = { idsFollowCreatedAt: true },
): Promise<RunRecord[]> {
  const where: postgres.PendingQuery<postgres.Row[]>[] = [];
  if (filter.workflowName) where.push(sql`workflow_name = ${filter.workflowName}`);
  // One status as `=`, so the planner walks runs_by_status in id order; `= any` of one value it
  // estimated like a broad filter and walked the primary key (8 ms for 5% of 100,000 runs).
  if (filter.statuses?.length === 1) where.push(sql`status = ${filter.statuses[0]!}`);
  else if (filter.statuses && filter.statuses.length > 1) where.push(sql`status = any(${filter.statuses}::text[])`);
  if (filter.instanceId) where.push(sql`instance_id = ${filter.instanceId}`);
  if (filter.taskQueue) where.push(sql`task_queue = ${filter.taskQueue}`);
  if (filter.labels && Object.keys(filter.labels).length > 0) {
    where.push(sql`labels @> ${JSON.stringify(filter.labels)}::text::jsonb`);
  }
  // Time filters on created_at, the scan bounded by the ids' time (run-id-time.ts says why).
  const ids = clock.idsFollowCreatedAt ? idBoundsOf(filter) : {};
  if (filter.createdAfter) where.push(sql`created_at >= ${filter.createdAfter}`);
  if (filter.createdBefore) where.push(sql`created_at < ${filter.createdBefore}`);
  if (ids.from) where.push(sql`id >= ${ids.from}::uuid`);
  if (ids.below) where.push(sql`id < ${ids.below}::uuid`);
  if (filter.beforeId) where.push(sql`id < ${filter.beforeId}::uuid`);
  const condition = where.reduce((all, one) => sql`${all} and ${one}`, sql`true`);
  return sql<RunRecord[]>`
    select ${runColumns(sql)} from dex.runs where ${condition} order by id desc limit ${filter.limit}`;
}

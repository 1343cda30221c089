/** Task queues: creation with their partition (DDL under an advisory lock) and the admin reads. */
import { and, asc, eq, type SQL } from "drizzle-orm";
import type { Queryable, Sql } from "./db.js";
import type { Drizzle } from "./runs.js";
import { taskQueues } from "./schema.js";

export type TaskQueueRecord = typeof taskQueues.$inferSelect;

/** pg_advisory_xact_lock key for queue DDL: "dexq". */
const QUEUE_DDL_LOCK_KEY = 0x6465_7871;

/**
 * Creates the queue row and its LIST partition in ONE transaction. Every
 * creator first takes one transaction-scoped advisory lock: CREATE TABLE ...
 * PARTITION OF locks the parent table, and two servers doing that while each
 * also holds locks the other needs can deadlock; serialising queue DDL (rare)
 * behind one lock avoids it, and makes the existence check race-free.
 * The name was validated against the same pattern as the check constraint,
 * and is quoted as a literal anyway.
 */
export async function createTaskQueue(
  sql: Sql,
  input: { type: "workflow" | "activity"; name: string; capacity: number },
): Promise<TaskQueueRecord | undefined> {
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${QUEUE_DDL_LOCK_KEY})`;
    const existing = await tx`select 1 from dex.task_queues where type = ${input.type} and name = ${input.name}`;
    if (existing.length > 0) return undefined;
    const [{ id } = { id: "0" }] = await tx<{ id: string }[]>`
      select nextval(pg_get_serial_sequence('dex.task_queues', 'id'))::text as id`;
    const partition = `${input.type}_tasks_q${id}`;
    const literal = `'${input.name.replace(/'/g, "''")}'`;
    await tx.unsafe(
      `create table dex.${partition} partition of dex.${input.type}_tasks for values in (${literal}) with (fillfactor = 80)`,
    );
    const [row] = await tx<{ created_at: Date; updated_at: Date }[]>`
      insert into dex.task_queues (id, type, name, capacity, partition_name)
      overriding system value
      values (${id}, ${input.type}, ${input.name}, ${input.capacity}, ${partition})
      returning created_at, updated_at`;
    return {
      id: Number(id),
      type: input.type,
      name: input.name,
      capacity: input.capacity,
      status: "active" as const,
      partitionName: partition,
      createdAt: row!.created_at,
      updatedAt: row!.updated_at,
    };
  });
}

export async function taskQueueExists(sql: Queryable, type: string, name: string): Promise<boolean> {
  const rows = await sql`select 1 from dex.task_queues where type = ${type} and name = ${name}`;
  return rows.length > 0;
}

export async function listTaskQueues(db: Drizzle, type?: "workflow" | "activity"): Promise<TaskQueueRecord[]> {
  const where: SQL[] = [];
  if (type) where.push(eq(taskQueues.type, type));
  return db.select().from(taskQueues).where(and(...where)).orderBy(asc(taskQueues.type), asc(taskQueues.name));
}

export interface QueueLoad {
  type: string;
  queue: string;
  depth: number;
  inFlight: number;
  oldestAvailableAt: Date | null;
  now: Date;
}

/**
 * Depth (not leased: waiting or backing off), in-flight (leased now) and the
 * oldest available task per queue. Counts scan the task tables: an admin
 * read, not a hot path. A workflow task whose lease ran out counts as waiting.
 */
export async function queueLoads(sql: Queryable): Promise<QueueLoad[]> {
  const rows = await sql<
    { type: string; queue: string; depth: string; in_flight: string; oldest: Date | null; now: Date }[]
  >`
    select type, queue,
           count(*) filter (where not leased) as depth,
           count(*) filter (where leased) as in_flight,
           min(visible_at) filter (where not leased and visible_at <= now()) as oldest,
           now() as now
    from (
      select 'workflow' as type, queue_name as queue, visible_at,
             (leased_until is not null and leased_until > now()) as leased
      from dex.workflow_tasks
      union all
      select 'activity', queue_name, visible_at, leased_until is not null
      from dex.activity_tasks
    ) t
    group by type, queue`;
  return rows.map((r) => ({
    type: r.type,
    queue: r.queue,
    depth: Number(r.depth),
    inFlight: Number(r.in_flight),
    oldestAvailableAt: r.oldest,
    now: r.now,
  }));
}

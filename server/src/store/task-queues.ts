/**
 * Task queues: creation and deletion with their partition (DDL under one
 * advisory lock), capacity and pause (read by dex.claim_limit() inside every
 * claim, see store/workflow-tasks.ts), and the admin reads. Wakes for parked
 * polls are the caller's, after the commit (engine/task-queues.ts).
 */
import { pgCode } from "./errors.js";
import type { Queryable, Sql } from "./db.js";
import { openStatuses } from "./vocabulary.js";

export interface TaskQueueRecord {
  id: number;
  type: "workflow" | "activity";
  name: string;
  /** Maximum tasks leased at once, cluster-wide; 0 = unlimited. */
  capacity: number;
  status: "active" | "paused";
  partitionName: string;
  createdAt: Date;
  updatedAt: Date;
  /** Seconds the queue's runs are kept after they end; null: the server default; 0: forever (workflow queues only). */
  retentionSeconds: number | null;
  /** When a worker last polled the queue, on any server (batched, up to ~5 s late: metrics/poll-tracker.ts); null: never. */
  lastPolledAt: Date | null;
}

type QueueType = TaskQueueRecord["type"];

interface RawQueue {
  id: string;
  type: QueueType;
  name: string;
  capacity: number;
  status: "active" | "paused";
  partition_name: string;
  created_at: Date;
  updated_at: Date;
  retention_seconds: number | null;
  last_polled_at: Date | null;
}

function fromRaw(r: RawQueue): TaskQueueRecord {
  return {
    id: Number(r.id),
    type: r.type,
    name: r.name,
    capacity: r.capacity,
    status: r.status,
    partitionName: r.partition_name,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    retentionSeconds: r.retention_seconds,
    lastPolledAt: r.last_polled_at,
  };
}

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
  input: { type: "workflow" | "activity"; name: string; capacity: number; retentionSeconds?: number | null },
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
      insert into dex.task_queues (id, type, name, capacity, partition_name, retention_seconds)
      overriding system value
      values (${id}, ${input.type}, ${input.name}, ${input.capacity}, ${partition}, ${input.retentionSeconds ?? null})
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
      retentionSeconds: input.retentionSeconds ?? null,
      lastPolledAt: null,
    };
  });
}

/** What createTaskQueue names partitions; checked again before a name goes into DDL. */
const PARTITION_NAME = /^(workflow|activity)_tasks_q\d+$/;

/** How long delete waits for the task table locks before answering "busy" (it blocks claims while it waits). */
const DELETE_LOCK_TIMEOUT = "3s";

/** retentionSeconds null: back to the server default. */
export type QueueChange =
  | { capacity?: number; retentionSeconds?: number | null }
  | { status: "active" | "paused" };

/**
 * Changes a queue's capacity or status: lock the row, update it, and return
 * the row before and after (the caller decides whom to wake once this has
 * committed). The row lock waits
 * for a claim of a capped queue in progress (dex.claim_limit holds the row
 * until the claim commits), so every claim that starts after this commits
 * reads the new value. Undefined when the queue does not exist.
 */
export async function updateTaskQueue(
  sql: Sql,
  key: { type: QueueType; name: string },
  change: QueueChange,
): Promise<{ before: TaskQueueRecord; after: TaskQueueRecord } | undefined> {
  return sql.begin(async (tx) => {
    const [old] = await tx<RawQueue[]>`
      select id, type, name, capacity, status, partition_name, created_at, updated_at, retention_seconds, last_polled_at
      from dex.task_queues where type = ${key.type} and name = ${key.name}
      for no key update`;
    if (!old) return undefined;
    const capacity = "capacity" in change && change.capacity !== undefined ? change.capacity : old.capacity;
    const status = "status" in change ? change.status : old.status;
    const retention = "retentionSeconds" in change && change.retentionSeconds !== undefined ? change.retentionSeconds : old.retention_seconds;
    const [row] = await tx<RawQueue[]>`
      update dex.task_queues set capacity = ${capacity}, status = ${status}, retention_seconds = ${retention}, updated_at = now()
      where type = ${key.type} and name = ${key.name}
      returning id, type, name, capacity, status, partition_name, created_at, updated_at, retention_seconds, last_polled_at`;
    return { before: fromRaw(old), after: fromRaw(row!) };
  });
}

export type DeleteOutcome =
  | { outcome: "deleted" }
  | { outcome: "missing" }
  | { outcome: "not_empty"; tasks: number; openRuns: number }
  | { outcome: "busy" };

/**
 * Deletes an empty queue: its row and its partition, in ONE transaction, under
 * the advisory lock queue creation takes (so creators and deleters on several
 * servers run one at a time and cannot deadlock each other).
 *
 * Lock order, and why: DROP TABLE of a partition takes ACCESS EXCLUSIVE on the
 * partitioned parent. Claims hold a lock on the parent from their start and
 * may then wait for the queue row (a capped queue's claim locks it); so this
 * takes the parent's and the partition's locks FIRST, before touching the
 * row: once it holds them, no statement on any queue's tasks runs, and the
 * counts below (fresh statements, fresh snapshots) are exact. The same lock
 * makes a concurrent start or schedule on this queue either commit before
 * (and be counted) or fail after, finding no partition (23514, see
 * deletedQueueIn). While it waits it blocks the claims queued behind it, so
 * the wait is bounded (lock_timeout) and answers "busy".
 *
 * A workflow queue with open runs is not empty either: a run sleeping on a
 * timer or waiting for an activity has no task now, but will need one there.
 */
export async function deleteTaskQueue(
  sql: Sql,
  key: { type: QueueType; name: string },
): Promise<DeleteOutcome> {
  try {
    return await sql.begin(async (tx): Promise<DeleteOutcome> => {
      await tx`select pg_advisory_xact_lock(${QUEUE_DDL_LOCK_KEY})`;
      const [queue] = await tx<{ partition_name: string }[]>`
        select partition_name from dex.task_queues where type = ${key.type} and name = ${key.name}`;
      if (!queue) return { outcome: "missing" };
      const partition = queue.partition_name;
      if (!PARTITION_NAME.test(partition)) throw new Error(`task queue ${key.type}:${key.name} has an unexpected partition name "${partition}"`);
      await tx.unsafe(`set local lock_timeout = '${DELETE_LOCK_TIMEOUT}'`);
      await tx.unsafe(`lock table only dex.${key.type}_tasks, dex.${partition} in access exclusive mode`);
      const [counted] = await tx.unsafe<{ n: string }[]>(`select count(*) as n from dex.${partition}`);
      const tasks = Number(counted!.n);
      let openRuns = 0;
      if (key.type === "workflow") {
        const [open] = await tx<{ n: string }[]>`
          select count(*) as n from dex.runs where task_queue = ${key.name} and status in ${openStatuses(tx)}`;
        openRuns = Number(open!.n);
      }
      if (tasks > 0 || openRuns > 0) return { outcome: "not_empty", tasks, openRuns };
      await tx`delete from dex.task_queues where type = ${key.type} and name = ${key.name}`;
      await tx.unsafe(`drop table dex.${partition}`);
      return { outcome: "deleted" };
    });
  } catch (err) {
    if (pgCode(err) === "55P03") return { outcome: "busy" };
    throw err;
  }
}

/**
 * The queue an error says is gone: DXQ01 from dex.claim_limit (a poll of a
 * queue deleted since the caller checked), or 23514 "no partition of relation
 * ... found for row" from an insert into a deleted queue's tasks (a server
 * whose cache still knew the queue). `name` is undefined when Postgres gave
 * no detail.
 */
export function deletedQueueIn(err: unknown): { type: QueueType; name: string | undefined } | undefined {
  const code = pgCode(err);
  if (code !== "DXQ01" && code !== "23514") return undefined;
  const { message, detail } = err as { message?: unknown; detail?: unknown };
  if (code === "DXQ01") {
    const match = /^(workflow|activity) task queue "(.*)" does not exist$/.exec(String(message));
    return match ? { type: match[1] as QueueType, name: match[2] } : undefined;
  }
  const match = /^no partition of relation "(workflow|activity)_tasks" found for row$/.exec(String(message));
  if (!match) return undefined;
  const key = /\(queue_name\) = \((.*)\)\.?$/.exec(typeof detail === "string" ? detail : "");
  return { type: match[1] as QueueType, name: key?.[1] };
}

export async function taskQueueExists(sql: Queryable, type: string, name: string): Promise<boolean> {
  const rows = await sql`select 1 from dex.task_queues where type = ${type} and name = ${name}`;
  return rows.length > 0;
}

/** A queue's capacity and status, or undefined if it does not exist. */
export async function readTaskQueue(
  sql: Queryable,
  type: QueueType,
  name: string,
): Promise<Pick<TaskQueueRecord, "capacity" | "status"> | undefined> {
  const [row] = await sql<{ capacity: number; status: "active" | "paused" }[]>`
    select capacity, status from dex.task_queues where type = ${type} and name = ${name}`;
  return row;
}

export async function listTaskQueues(sql: Queryable, type?: QueueType): Promise<TaskQueueRecord[]> {
  const rows = await sql<RawQueue[]>`
    select id, type, name, capacity, status, partition_name, created_at, updated_at, retention_seconds, last_polled_at
    from dex.task_queues where ${type ? sql`type = ${type}` : sql`true`}
    order by type, name`;
  return rows.map(fromRaw);
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
 * oldest available task per queue, as a subquery (columns type, queue, depth,
 * in_flight, oldest): the one definition ListTaskQueues and the /metrics
 * gauges (store/queue-stats.ts) both read. Counts scan the task tables: an
 * admin read, not a hot path. A task whose lease ran out counts as waiting,
 * as it does for capacity: a workflow task is claimable again at once; an
 * activity attempt waits for the lease reaper to retry it. "Leased" is the
 * claim's own test (dex.claim_limit, migration 0003): keep the two the same.
 */
export function loadsByQueue(sql: Queryable) {
  return sql`
    select type, queue,
           count(*) filter (where not leased) as depth,
           count(*) filter (where leased) as in_flight,
           min(visible_at) filter (where not leased and visible_at <= now()) as oldest
    from (
      select 'workflow' as type, queue_name as queue, visible_at,
             (leased_until is not null and visible_at > now()) as leased
      from dex.workflow_tasks
      union all
      select 'activity', queue_name, visible_at, (leased_until is not null and visible_at > now())
      from dex.activity_tasks
    ) tasks
    group by type, queue`;
}

export async function queueLoads(sql: Queryable): Promise<QueueLoad[]> {
  const rows = await sql<
    { type: string; queue: string; depth: string; in_flight: string; oldest: Date | null; now: Date }[]
  >`select t.*, now() as now from (${loadsByQueue(sql)}) t`;
  return rows.map((r) => ({
    type: r.type,
    queue: r.queue,
    depth: Number(r.depth),
    inFlight: Number(r.in_flight),
    oldestAvailableAt: r.oldest,
    now: r.now,
  }));
}

/** queueLoads for one queue: reads its partition only. */
export async function queueLoad(sql: Queryable, type: QueueType, name: string): Promise<QueueLoad> {
  const table = type === "workflow" ? "dex.workflow_tasks" : "dex.activity_tasks";
  const [row] = await sql.unsafe<{ depth: string; in_flight: string; oldest: Date | null; now: Date }[]>(
    `select count(*) filter (where not leased) as depth,
            count(*) filter (where leased) as in_flight,
            min(visible_at) filter (where not leased and visible_at <= now()) as oldest,
            now() as now
     from (
       select visible_at, (leased_until is not null and visible_at > now()) as leased
       from ${table} where queue_name = $1
     ) t`,
    [name],
  );
  return {
    type,
    queue: name,
    depth: Number(row!.depth),
    inFlight: Number(row!.in_flight),
    oldestAvailableAt: row!.oldest,
    now: row!.now,
  };
}

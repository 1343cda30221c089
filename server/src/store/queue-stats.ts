/**
 * Reads about queues for the metrics endpoint and for DescribeRun's waiting
 * reasons, and the batched write of when queues were last polled. None of
 * these is on a claim or completion path; each is one autocommit statement.
 */
import type { Queryable } from "./db.js";
import { openStatuses } from "./vocabulary.js";
import { loadsByQueue } from "./task-queues.js";

export interface QueueGaugeRow {
  type: string;
  queue: string;
  depth: number;
  inFlight: number;
  capacity: number;
  paused: boolean;
  oldestPendingAgeSeconds: number;
  /** Workflow queues: runs whose current workflow task failed at least once (last_failure set). */
  failingWorkflowTasks: number;
}

/**
 * Every queue with its depth (tasks not leased: waiting or backing off),
 * in-flight (leased now) and the age of the oldest task a worker could take
 * now, in ONE statement. In flight means what the capacity counts
 * (dex.claim_limit, migration 0003): leased, lease not expired; every other
 * task is pending (an activity whose lease just expired waits there for the
 * lease reaper, about a second). The counts scan each queue's partition: run
 * it on a connection with a short statement_timeout (the metrics pool), so a
 * huge backlog costs a failed scrape, never a long-running statement.
 */
export async function readQueueGauges(sql: Queryable): Promise<QueueGaugeRow[]> {
  const rows = await sql<
    { type: string; queue: string; capacity: number; status: string; depth: string; in_flight: string; oldest_age: number; failing: string }[]
  >`
    select q.type, q.name as queue, q.capacity, q.status,
           coalesce(t.depth, 0)::text as depth, coalesce(t.in_flight, 0)::text as in_flight,
           coalesce(extract(epoch from now() - t.oldest), 0)::float8 as oldest_age,
           coalesce(f.failing, 0)::text as failing
    from dex.task_queues q
    left join (${loadsByQueue(sql)}
    ) t on t.type = q.type and t.queue = q.name
    left join (
      -- A task row goes with its completion, so a failure recorded on it has not been overcome yet.
      select 'workflow' as type, queue_name as queue, count(*) as failing
      from dex.workflow_tasks where last_failure is not null group by queue_name
    ) f on f.type = q.type and f.queue = q.name
    order by q.type, q.name`;
  return rows.map((r) => ({
    type: r.type,
    queue: r.queue,
    depth: Number(r.depth),
    inFlight: Number(r.in_flight),
    capacity: r.capacity,
    paused: r.status === "paused",
    oldestPendingAgeSeconds: Math.max(0, r.oldest_age),
    failingWorkflowTasks: Number(r.failing),
  }));
}

/**
 * How long the most overdue timer has been due without firing (0: none), by
 * the database clock: an index probe of timers_due. A timer loop that stopped
 * on every server shows as a number that keeps growing.
 */
export async function readOverdueTimerSeconds(sql: Queryable): Promise<number> {
  const [row] = await sql<{ overdue: number | null }[]>`
    select extract(epoch from now() - min(fire_at))::float8 as overdue from dex.timers where fire_at <= now()`;
  return Math.max(0, row?.overdue ?? 0);
}

/**
 * Sets last_polled_at = now() on the given queues, skipping rows written in
 * the last `minIntervalMs` (another server's round got there first). The rows
 * are locked in (type, name) order, so two servers writing overlapping sets
 * cannot deadlock; a claim of a capped queue holds its row for the claim's
 * few milliseconds (dex.claim_limit), and this waits that long, once a round.
 * Not SKIP LOCKED: on a busy capped queue the row is nearly always locked,
 * and skipping would leave the time stale exactly where workers are busiest.
 */
export async function recordQueuePolls(
  sql: Queryable,
  queues: Array<{ type: string; name: string }>,
  minIntervalMs: number,
): Promise<void> {
  if (queues.length === 0) return;
  await sql`
    with due as (
      select q.type, q.name from dex.task_queues q
      join unnest(${queues.map((q) => q.type)}::text[], ${queues.map((q) => q.name)}::text[]) as u(type, name)
        on q.type = u.type and q.name = u.name
      where q.last_polled_at is null or q.last_polled_at < now() - ${minIntervalMs} * interval '1 millisecond'
      order by q.type, q.name
      for no key update of q
    )
    update dex.task_queues q set last_polled_at = now()
    from due where q.type = due.type and q.name = due.name`;
}

export interface QueueState {
  type: string;
  name: string;
  status: "active" | "paused";
  capacity: number;
  /** Leased tasks (lease not expired); counted only for queues with a capacity (0 when unlimited: not needed). */
  inFlight: number;
  lastPolledAt: Date | null;
  /** The database clock, to compare lastPolledAt with. */
  now: Date;
}

/**
 * Status, capacity, in-flight and last poll of a few queues (a run's workflow
 * queue and its pending activities' queues), in one statement for describe.
 * In-flight is counted as the capacity counts it (dex.claim_limit: leased,
 * lease not expired, over the leased-rows partial indexes), and only when a
 * capacity makes it matter.
 */
export async function readQueueStates(sql: Queryable, queues: Array<{ type: string; name: string }>): Promise<QueueState[]> {
  if (queues.length === 0) return [];
  const rows = await sql<
    { type: string; name: string; status: string; capacity: number; last_polled_at: Date | null; now: Date; in_flight: string }[]
  >`
    select q.type, q.name, q.status, q.capacity, q.last_polled_at, now() as now,
           (case
              when q.capacity = 0 then 0
              when q.type = 'workflow' then
                (select count(*) from dex.workflow_tasks t
                 where t.queue_name = q.name and t.leased_until is not null and t.visible_at > now())
              else
                (select count(*) from dex.activity_tasks t
                 where t.queue_name = q.name and t.leased_until is not null and t.visible_at > now())
            end)::text as in_flight
    from dex.task_queues q
    join unnest(${queues.map((q) => q.type)}::text[], ${queues.map((q) => q.name)}::text[]) as u(type, name)
      on q.type = u.type and q.name = u.name`;
  return rows.map((r) => ({
    type: r.type,
    name: r.name,
    status: r.status === "paused" ? "paused" : "active",
    capacity: r.capacity,
    inFlight: Number(r.in_flight),
    lastPolledAt: r.last_polled_at,
    now: r.now,
  }));
}

export interface KeyHolders {
  /** Up to `limit` of the runs holding a slot of the key, oldest first. */
  runIds: string[];
  /** How many runs hold a slot. */
  count: number;
}

/**
 * The open runs holding a slot of a concurrency key: RUNNING, or CREATED and
 * admitted (not waiting in the key's line, migration 0004); over the
 * runs_concurrency_holders index, about the key's limit rows.
 */
export async function concurrencyKeyHolders(
  sql: Queryable,
  input: { key: string; excludeRunId: string; limit: number },
): Promise<KeyHolders> {
  const rows = await sql<{ id: string; holders: string }[]>`
    select r.id, (count(*) over ())::text as holders
    from dex.runs r
    where r.concurrency_key = ${input.key} and r.status in ${openStatuses(sql)} and not r.concurrency_waiting
      and r.id <> ${input.excludeRunId}
    order by r.id
    limit ${input.limit}`;
  return { runIds: rows.map((r) => r.id), count: rows.length === 0 ? 0 : Number(rows[0]!.holders) };
}

/**
 * The test clock's SQL (@dex/test-environment only; docs/decisions/0018-test-clock.md).
 *
 * Every time the server uses comes from the database clock: `now()` for task times (the workflow
 * clock), leases, timer fire times, back-offs and deadlines, `clock_timestamp()` for inbox
 * visibility. A test database shadows those functions: schema `dex_clock` holds a one-row table
 * with a shift and functions of the same names that return the real clock plus that shift, and the
 * database's default search_path puts `dex_clock` before `pg_catalog`. Function names are resolved
 * when a statement is parsed (and a column default when its table is created), so:
 * - install before migrating: the migrations' `default now()` then binds to dex_clock.now(), and
 *   rows written without a time get the test clock too;
 * - install before any server connects: search_path is read when a session starts, and the
 *   statements a session prepares keep the functions they resolved.
 * A production database has no `dex_clock` schema and nothing here runs against it.
 *
 * The shift only grows, so a time written earlier is never in the future of a later `now()`.
 */
import type { Queryable, Sql } from "./db.js";

/** Where the shadowing functions live; first in the test database's search_path. */
export const TEST_CLOCK_SCHEMA = "dex_clock";

/**
 * Prepares the current database for a test clock (shift 0). Run once on a new, empty database,
 * before `migrate` and before any server connects (see above). Idempotent.
 */
export async function installTestClock(sql: Sql): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe(`
      create schema if not exists dex_clock;
      create table if not exists dex_clock.clock (
        id integer primary key default 1 check (id = 1),
        shift interval not null default '0'
      );
      insert into dex_clock.clock (id) values (1) on conflict do nothing;
      -- STABLE like pg_catalog.now(): usable in index conditions (fire_at <= now()); one
      -- statement sees one shift. A skip committed between two statements of one transaction
      -- moves now() between them, as clock_timestamp() moves anyway (decision 0018).
      create or replace function dex_clock.now() returns timestamptz language sql stable parallel safe
        as $$ select pg_catalog.now() + (select shift from dex_clock.clock where id = 1) $$;
      create or replace function dex_clock.transaction_timestamp() returns timestamptz language sql stable parallel safe
        as $$ select pg_catalog.transaction_timestamp() + (select shift from dex_clock.clock where id = 1) $$;
      create or replace function dex_clock.statement_timestamp() returns timestamptz language sql stable parallel safe
        as $$ select pg_catalog.statement_timestamp() + (select shift from dex_clock.clock where id = 1) $$;
      create or replace function dex_clock.clock_timestamp() returns timestamptz language sql volatile parallel safe
        as $$ select pg_catalog.clock_timestamp() + (select shift from dex_clock.clock where id = 1) $$;
      do $$ begin
        execute format('alter database %I set search_path = dex_clock, pg_catalog, "$user", public', current_database());
      end $$;
    `);
  });
}

/**
 * Whether this session's `now()` is the test clock's. A server started with `testClock` checks it,
 * so that a database without the clock fails the start instead of skipping nothing.
 */
export async function testClockInstalled(sql: Queryable): Promise<boolean> {
  const [row] = await sql<{ schema: string }[]>`select pronamespace::regnamespace::text as schema from pg_proc where oid = 'now'::regproc`;
  return row?.schema === TEST_CLOCK_SCHEMA;
}

/** The test clock now, and how far it is ahead of the real clock. */
export async function readTestClock(sql: Queryable): Promise<{ now: Date; shiftMs: number }> {
  const [row] = await sql<{ now: Date; shift_ms: number }[]>`
    select now() as now, (extract(epoch from shift) * 1000)::float8 as shift_ms from dex_clock.clock where id = 1`;
  return { now: row!.now, shiftMs: row!.shift_ms };
}

/** Moves the test clock forward by `ms` (0 or more), whatever is running; returns the new time. */
export async function advanceTestClock(sql: Queryable, ms: number): Promise<Date> {
  const [row] = await sql<{ now: Date }[]>`
    update dex_clock.clock set shift = shift + ${ms} * interval '1 millisecond' where id = 1
    returning pg_catalog.now() + shift as now`;
  return row!.now;
}

export interface IdleSkip {
  /**
   * Something can run now: a workflow or activity task that is visible or leased (running), or a
   * timer that is due but not fired yet. Nothing moved.
   */
  busy: boolean;
  /** The earliest time something waits for (a timer's fire time, a task's back-off); null: nothing. */
  nextAt: Date | null;
  /** How far the clock moved (0: busy, nothing to wait for, or already there). */
  skippedMs: number;
  /** The test clock after the statement. */
  now: Date;
}

/**
 * ONE statement (one snapshot, so "idle" and "the next time" agree): when nothing can run now,
 * moves the clock to the earliest time something waits for, capped at `until`, so that thing
 * (a timer, an event wait's timeout, a retry's back-off) comes due at once and nothing later is
 * jumped over. A due timer the timer loop has not fired yet counts as busy (and so does a due
 * schedule firing): without that check a second skip, before the loop's pass, would jump past the
 * first timer's consequences. A schedule's due_at is NULL while it is paused or done.
 * Unleased tasks that are not visible yet are back-offs (workflow task and activity retries):
 * waits like timers. Leased tasks are running: the clock is left alone, so an activity's
 * timeouts and heartbeats see real time pass while it runs.
 * Cost: index probes of timers_due and of the task tables' claim and lease indexes; a test
 * database holds a handful of rows.
 */
export async function skipTestClockIfIdle(sql: Queryable, until: Date | null): Promise<IdleSkip> {
  const [row] = await sql<{ busy: boolean; next_at: Date | null; skipped_ms: number | null; now: Date }[]>`
    with state as (
      select exists(select 1 from dex.workflow_tasks where visible_at <= now() or leased_until is not null)
          or exists(select 1 from dex.activity_tasks where visible_at <= now() or leased_until is not null)
          or exists(select 1 from dex.timers where fire_at <= now())
          or exists(select 1 from dex.schedules where due_at <= now()) as busy,
             least((select min(fire_at) from dex.timers),
                   (select min(due_at) from dex.schedules),
                   (select min(visible_at) from dex.workflow_tasks where leased_until is null),
                   (select min(visible_at) from dex.activity_tasks where leased_until is null)) as next_at
    ), target as (
      select least(next_at, ${until === null ? null : until.toISOString()}::timestamptz) as at from state where not busy
    ), moved as (
      update dex_clock.clock c set shift = c.shift + (t.at - now())
      from target t where c.id = 1 and t.at > now()
      returning (extract(epoch from t.at - now()) * 1000)::float8 as skipped_ms, pg_catalog.now() + c.shift as now
    )
    select s.busy, s.next_at, m.skipped_ms, coalesce(m.now, now()) as now
    from state s left join moved m on true`;
  return { busy: row!.busy, nextAt: row!.next_at, skippedMs: row!.skipped_ms ?? 0, now: row!.now };
}

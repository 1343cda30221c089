/**
 * The test clock's SQL (store/test-clock.ts, decision 0018) on a real database: what it shadows,
 * what binds to it, and the idle skip's rules, without a server (no timer loop fires anything).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEmptyDatabase, createTestDatabase, type TestDatabase } from "@dex/testing";
import { openDatabase, type Sql } from "../src/store/db.js";
import { migrate } from "../src/store/migrator.js";
import { advanceTestClock, installTestClock, readTestClock, skipTestClockIfIdle, testClockInstalled } from "../src/store/test-clock.js";
import { startServer } from "../src/server.js";
import { silentLogger } from "../src/logger.js";

const HOUR = 3_600_000;

describe("test clock", () => {
  let db: TestDatabase;
  let sql: Sql;

  beforeAll(async () => {
    db = await createEmptyDatabase();
    const setup = openDatabase({ url: db.url, maxConnections: 1 });
    await installTestClock(setup);
    await setup.end();
    // A new session: search_path is read when a session starts.
    sql = openDatabase({ url: db.url, maxConnections: 2 });
    await migrate(sql);
  });

  afterAll(async () => {
    await sql?.end();
    await db?.drop();
  });

  it("shadows now() for new sessions, and the migrations' column defaults bind to it", async () => {
    expect(await testClockInstalled(sql)).toBe(true);
    const [bound] = await sql<{ test: number; real: number }[]>`
      select count(*) filter (where d.refobjid = 'dex_clock.now()'::regprocedure)::int as test,
             count(*) filter (where d.refobjid = 'pg_catalog.now()'::regprocedure)::int as real
      from pg_attrdef a join pg_depend d on d.classid = 'pg_attrdef'::regclass and d.objid = a.oid
      where a.adrelid::regclass::text like 'dex.%'`;
    expect(bound!.test).toBeGreaterThan(0);
    expect(bound!.real).toBe(0);
  });

  it("moves now() and clock_timestamp() together, by the shift", async () => {
    const before = await readTestClock(sql);
    await advanceTestClock(sql, 5 * HOUR);
    const [row] = await sql<{ now: Date; clock: Date; real: Date }[]>`select now() as now, clock_timestamp() as clock, pg_catalog.now() as real`;
    expect((await readTestClock(sql)).shiftMs).toBe(before.shiftMs + 5 * HOUR);
    expect(row!.now.getTime() - row!.real.getTime()).toBe(before.shiftMs + 5 * HOUR);
    expect(row!.clock.getTime()).toBeGreaterThanOrEqual(row!.now.getTime());
  });

  it("skips to the earliest timer only, and not again while that timer is due and unfired", async () => {
    const timer = (seq: number, inMs: number) => sql`
      insert into dex.timers (run_id, seq, kind, fire_at, workflow_queue, priority, event)
      values ('00000000-0000-7000-8000-000000000001', ${seq}, 'timer', now() + ${inMs} * interval '1 millisecond', 'default', 50, '\\x')`;
    await timer(1, 2 * HOUR);
    await timer(2, 1 * HOUR);
    const start = (await readTestClock(sql)).now;
    const first = await skipTestClockIfIdle(sql, null);
    expect(first.busy).toBe(false);
    expect(first.skippedMs).toBeGreaterThan(HOUR - 1_000);
    expect(first.skippedMs).toBeLessThanOrEqual(HOUR);
    expect(first.now.getTime() - start.getTime()).toBeLessThan(2 * HOUR);
    // Timer 2 is due now; only a timer loop's pass may fire it, so the next check must wait.
    const second = await skipTestClockIfIdle(sql, null);
    expect(second).toMatchObject({ busy: true, skippedMs: 0 });
    await sql`delete from dex.timers where seq = 2`;
    // `until` caps a skip (env.sleep's target).
    const until = new Date((await readTestClock(sql)).now.getTime() + 10 * 60_000);
    const capped = await skipTestClockIfIdle(sql, until);
    expect(capped.now.getTime()).toBe(until.getTime());
    await sql`delete from dex.timers`;
  });

  it("refuses to start a server with testClock on a database that has no test clock", async () => {
    const plain = await createTestDatabase();
    try {
      await expect(startServer({ databaseUrl: plain.url, port: 0, logger: silentLogger, testClock: true })).rejects.toThrow(
        /has no test clock; prepare it with installTestClock before migrating it/,
      );
    } finally {
      await plain.drop();
    }
  });
});

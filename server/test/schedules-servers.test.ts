/**
 * Schedules across servers on one database: three servers fire a 1 s
 * schedule together, each nominal second exactly once; and a catch-up after
 * every server was down, where nominal times older than the catch-up window
 * are skipped and counted, and the ones within it start. All checked from the
 * database: every nominal second from the first to the last is either one run
 * or one counted skip, never both, never two runs.
 */
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { ScheduleOverlapPolicy, ScheduleSkipReason } from "@dex/proto";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { serveDatabase, uniqueId, type Harness } from "./helpers.js";
import { everyMs, scheduleClient, scheduledRuns } from "./schedules-support.js";

const databases: TestDatabase[] = [];
afterAll(async () => {
  for (const db of databases) await db.drop();
});

/** Nominal times in order, each once, one second apart: no firing lost, none twice. */
function expectConsecutive(nominal: number[], missed = 0): void {
  expect(new Set(nominal).size).toBe(nominal.length);
  const span = (nominal[nominal.length - 1]! - nominal[0]!) / 1_000 + 1;
  expect(nominal.length + missed).toBe(span);
}

describe("schedules on several servers", () => {
  it("three servers fire each nominal second exactly once", async () => {
    const db = await createTestDatabase();
    databases.push(db);
    const servers: Harness[] = [];
    for (let i = 0; i < 3; i++) servers.push(await serveDatabase(db));
    try {
      const id = uniqueId("three");
      await scheduleClient(servers[1]!).createSchedule({ scheduleId: id, schedule: everyMs(1_000) });
      const runs = await waitFor(async () => {
        const found = await scheduledRuns(servers[0]!, id);
        return found.length >= 6 && found;
      }, { message: "six runs" });
      expectConsecutive(runs.map((r) => r.nominalMs));
    } finally {
      for (const s of servers) await s.close();
    }
  });

  it("catches up within the window after every server was down, and counts what it skipped", async () => {
    const db = await createTestDatabase();
    databases.push(db);
    const id = uniqueId("catchup");
    const first = await serveDatabase(db);
    await scheduleClient(first).createSchedule({ scheduleId: id, schedule: everyMs(1_000, undefined, { catchupWindowMs: 3_000 }) });
    await waitFor(async () => (await scheduledRuns(first, id)).length >= 2, { message: "two runs before the outage" });
    await first.close();

    // Every server is down while ten nominal seconds pass by the database clock.
    const watcher = postgres(db.url, { max: 1, onnotice: () => {} });
    const { next } = (await watcher<{ next: Date }[]>`select next_nominal_at as next from dex.schedules where id = ${id}`)[0]!;
    await waitFor(async () => {
      const [row] = await watcher<{ passed: boolean }[]>`select now() > ${next}::timestamptz + interval '10 seconds' as passed`;
      return row!.passed;
    }, { message: "ten seconds of database time", intervalMs: 200 });
    await watcher.end();

    const second = await serveDatabase(db);
    try {
      const schedules = scheduleClient(second);
      await waitFor(async () => {
        const runs = await scheduledRuns(second, id);
        return runs.some((r) => r.nominalMs > next.getTime() + 11_000);
      }, { message: "a run after the outage" });
      const { info } = await schedules.describeSchedule({ scheduleId: id });
      const missed = Number(info!.catchupWindowMissed);
      expect(missed).toBeGreaterThanOrEqual(7);
      expect(info!.recentSkips.some((s) => s.reason === ScheduleSkipReason.CATCHUP_WINDOW && Number(s.count) === missed)).toBe(true);
      // Read the runs after describe: the count of misses is final for the times before them.
      const rows = await second.sql<{ nominal: string; created: Date }[]>`
        select substr(instance_id, ${id.length + 2}) as nominal, created_at as created
        from dex.runs where instance_id like ${`${id}-%`} order by instance_id`;
      const nominal = rows.map((r) => Date.parse(r.nominal));
      const last = Number(info!.recentActions[0]!.nominalTime!.seconds) * 1_000;
      expectConsecutive(nominal.filter((n) => n <= last), missed);
      // Nothing started later than the catch-up window after its nominal time.
      for (const row of rows) expect(row.created.getTime() - Date.parse(row.nominal)).toBeLessThanOrEqual(3_000);
    } finally {
      await second.close();
    }
  });

  it("TERMINATE_OTHER: a catch-up of several times in one pass leaves one open run", async () => {
    const db = await createTestDatabase();
    databases.push(db);
    const id = uniqueId("catchup-terminate");
    const first = await serveDatabase(db);
    const schedule = everyMs(1_000, ScheduleOverlapPolicy.TERMINATE_OTHER, { catchupWindowMs: 60_000 });
    await scheduleClient(first).createSchedule({ scheduleId: id, schedule });
    await waitFor(async () => (await scheduledRuns(first, id)).length >= 1, { message: "a run before the outage" });
    await first.close();

    // Every server is down while three nominal seconds pass by the database clock.
    const watcher = postgres(db.url, { max: 1, onnotice: () => {} });
    const { next } = (await watcher<{ next: Date }[]>`select next_nominal_at as next from dex.schedules where id = ${id}`)[0]!;
    await waitFor(async () => {
      const [row] = await watcher<{ passed: boolean }[]>`select now() > ${next}::timestamptz + interval '3 seconds' as passed`;
      return row!.passed;
    }, { message: "three seconds of database time", intervalMs: 200 });
    await watcher.end();

    const second = await serveDatabase(db);
    try {
      // The catch-up pass commits its runs together: once the third missed time has its run, it committed.
      const runs = await waitFor(async () => {
        const found = await scheduledRuns(second, id);
        return found.some((r) => r.nominalMs >= next.getTime() + 2_000) && found;
      }, { message: "the missed times' runs" });
      expect(runs.filter((r) => r.status === "CREATED" || r.status === "RUNNING")).toHaveLength(1);
    } finally {
      await second.close();
    }
  });
});


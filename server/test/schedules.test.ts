/**
 * Schedules on a real server and Postgres: firings on an interval with the
 * instance id `<schedule id>-<nominal time>`, describe, trigger now,
 * pause/resume, start/end times, the action limit, jitter, backfill, list
 * paging and delete. Times come from waiting for conditions, never for
 * durations: a 1 s interval fires whenever the loaded machine gets to it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ScheduleOverlapPolicy, ScheduleSkipReason, ScheduleActionKind } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { jitterOf } from "../src/engine/schedules-spec.js";
import { byRunId, rejectsWith, startHarness, uniqueId, type Harness } from "./helpers.js";
import { everyMs, scheduleClient, scheduledRuns, triggeredOnly, type ScheduleClient } from "./schedules-support.js";

let h: Harness;
let schedules: ScheduleClient;

beforeAll(async () => {
  h = await startHarness();
  schedules = scheduleClient(h);
});
afterAll(() => h.close());

describe("schedules", () => {
  it("fires every second, each run's instance id the schedule id and its nominal time", async () => {
    const id = uniqueId("every-second");
    await schedules.createSchedule({ scheduleId: id, schedule: everyMs(1_000) });
    const runs = await waitFor(async () => {
      const found = await scheduledRuns(h, id);
      return found.length >= 3 && found;
    }, { message: "three runs of a 1 s schedule" });
    for (const run of runs) {
      expect(run.nominalMs % 1_000).toBe(0);
      expect(run.instanceId).toBe(`${id}-${new Date(run.nominalMs).toISOString()}`);
    }
    const nominal = runs.map((r) => r.nominalMs);
    expect(new Set(nominal).size).toBe(nominal.length);
    const { info } = await schedules.describeSchedule({ scheduleId: id });
    expect(Number(info!.actionCount)).toBeGreaterThanOrEqual(3);
    expect(info!.recentActions[0]!.kind).toBe(ScheduleActionKind.SCHEDULED);
    expect(runs.map((r) => r.id)).toContain(info!.recentActions[0]!.runId);
    expect(info!.nextActionTimes).toHaveLength(5);
    await schedules.deleteSchedule({ scheduleId: id });
  });

  it("triggers now, and a retry with the same request id answers the same run", async () => {
    const id = uniqueId("trigger");
    await schedules.createSchedule({ scheduleId: id, schedule: triggeredOnly(ScheduleOverlapPolicy.ALLOW_ALL), paused: true });
    const first = await schedules.triggerSchedule({ scheduleId: id, requestId: "r1" });
    expect(first.runId).not.toBe("");
    const again = await schedules.triggerSchedule({ scheduleId: id, requestId: "r1" });
    expect(again.runId).toBe(first.runId);
    expect(await scheduledRuns(h, id)).toHaveLength(1);
    const { info } = await schedules.describeSchedule({ scheduleId: id });
    expect(info!.recentActions[0]).toMatchObject({ runId: first.runId, kind: ScheduleActionKind.TRIGGERED });
  });

  it("pause skips the nominal times that pass (counted), resume goes on from now", async () => {
    const id = uniqueId("pause");
    await schedules.createSchedule({ scheduleId: id, schedule: everyMs(1_000) });
    await waitFor(async () => (await scheduledRuns(h, id)).length >= 1, { message: "a first run" });
    await schedules.pauseSchedule({ scheduleId: id, note: "maintenance" });
    const atPause = (await scheduledRuns(h, id)).length;
    const paused = await schedules.describeSchedule({ scheduleId: id });
    expect(paused.info).toMatchObject({ paused: true, note: "maintenance", nextActionTimes: [] });
    // Two nominal times pass by the database clock while paused.
    const { now } = (await h.sql<{ now: Date }[]>`select now()`)[0]!;
    await waitFor(async () => {
      const [row] = await h.sql<{ passed: boolean }[]>`select now() > ${now}::timestamptz + interval '2.5 seconds' as passed`;
      return row!.passed;
    }, { message: "2.5 s of database time", intervalMs: 100 });
    expect((await scheduledRuns(h, id)).length).toBe(atPause);
    await schedules.resumeSchedule({ scheduleId: id, note: "done" });
    const resumed = await schedules.describeSchedule({ scheduleId: id });
    expect(Number(resumed.info!.pausedSkipped)).toBeGreaterThanOrEqual(2);
    expect(resumed.info!.recentSkips[0]).toMatchObject({ reason: ScheduleSkipReason.PAUSED });
    await waitFor(async () => (await scheduledRuns(h, id)).length > atPause, { message: "a run after resume" });
    await schedules.deleteSchedule({ scheduleId: id });
  });

  it("stops after its action limit, and fires only between start and end time", async () => {
    const limited = uniqueId("limit");
    await schedules.createSchedule({ scheduleId: limited, schedule: everyMs(1_000), remainingActions: 2 });
    await waitFor(async () => (await scheduledRuns(h, limited)).length === 2, { message: "two runs" });
    const { info } = await schedules.describeSchedule({ scheduleId: limited });
    expect(info!.remainingActions).toBe(0);
    expect(info!.nextActionTimes).toEqual([]);
    const { due } = (await h.sql<{ due: Date | null }[]>`select due_at as due from dex.schedules where id = ${limited}`)[0]!;
    expect(due).toBeNull();

    // A window of three nominal seconds starting two seconds from now.
    const { nowMs } = (await h.sql<{ nowMs: number }[]>`select (extract(epoch from now()) * 1000)::float8 as "nowMs"`)[0]!;
    const start = Math.ceil(nowMs / 1000) * 1000 + 2_000;
    const windowed = uniqueId("window");
    const schedule = everyMs(1_000);
    await schedules.createSchedule({
      scheduleId: windowed,
      schedule: {
        ...schedule,
        spec: { ...schedule.spec, startTime: { seconds: BigInt(start / 1000) }, endTime: { seconds: BigInt(start / 1000 + 2) } },
      },
    });
    await waitFor(async () => {
      const [row] = await h.sql<{ due: Date | null }[]>`select due_at as due from dex.schedules where id = ${windowed}`;
      return row!.due === null;
    }, { message: "the windowed schedule to finish" });
    expect((await scheduledRuns(h, windowed)).map((r) => r.nominalMs)).toEqual([start, start + 1_000, start + 2_000]);
  });

  it("jitter delays each firing by the same amount on every computation", async () => {
    expect(jitterOf("s", 1_000, 10_000)).toBe(jitterOf("s", 1_000, 10_000));
    const spread = new Set(Array.from({ length: 50 }, (_, i) => jitterOf("s", i * 1_000, 10_000)));
    expect(spread.size).toBeGreaterThan(40);
    for (const j of spread) expect(j).toBeGreaterThanOrEqual(0), expect(j).toBeLessThan(10_000);

    const id = uniqueId("jitter");
    const schedule = everyMs(60_000);
    await schedules.createSchedule({ scheduleId: id, schedule: { ...schedule, spec: { ...schedule.spec, jitter: { seconds: 30n } } } });
    const { info } = await schedules.describeSchedule({ scheduleId: id });
    const { next } = (await h.sql<{ next: Date }[]>`select next_nominal_at as next from dex.schedules where id = ${id}`)[0]!;
    const nominal = next.getTime();
    const due = Number(info!.nextActionTimes[0]!.seconds) * 1000 + info!.nextActionTimes[0]!.nanos / 1e6;
    expect(due).toBe(nominal + jitterOf(id, nominal, 30_000));
    const { dueAt } = (await h.sql<{ dueAt: Date }[]>`select due_at as "dueAt" from dex.schedules where id = ${id}`)[0]!;
    expect(dueAt.getTime()).toBe(due);
  });

  it("backfills a range once: a second backfill of it starts nothing", async () => {
    const id = uniqueId("backfill");
    // Paused: only the backfill fires it (a paused schedule backfills like any other).
    await schedules.createSchedule({
      scheduleId: id,
      schedule: { ...triggeredOnly(ScheduleOverlapPolicy.ALLOW_ALL), spec: { cronExpressions: ["0 * * * *"] } },
      paused: true,
    });
    const range = { scheduleId: id, startTime: { seconds: 1_767_225_600n }, endTime: { seconds: 1_767_225_600n + 3n * 3600n } };
    expect(await schedules.backfillSchedule(range)).toMatchObject({ started: 4, skipped: 0 });
    expect(await schedules.backfillSchedule(range)).toMatchObject({ started: 0, skipped: 4 });
    const runs = await scheduledRuns(h, id);
    expect(runs.map((r) => new Date(r.nominalMs).toISOString())).toEqual([
      "2026-01-01T00:00:00.000Z",
      "2026-01-01T01:00:00.000Z",
      "2026-01-01T02:00:00.000Z",
      "2026-01-01T03:00:00.000Z",
    ]);
    await rejectsWith(
      schedules.backfillSchedule({ scheduleId: id, startTime: { seconds: 0n }, endTime: { seconds: 1_767_225_600n } }),
      "INVALID_ARGUMENT",
      /more than 1000 nominal times/,
    );
  });

  it("lists schedules in pages, and delete leaves the runs alone", async () => {
    const prefix = uniqueId("list");
    for (const n of [1, 2, 3]) await schedules.createSchedule({ scheduleId: `${prefix}-${n}`, schedule: triggeredOnly(ScheduleOverlapPolicy.SKIP) });
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await schedules.listSchedules({ pageSize: 2, pageToken });
      seen.push(...page.schedules.map((s) => s.scheduleId));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(seen.filter((s) => s.startsWith(prefix))).toEqual([`${prefix}-1`, `${prefix}-2`, `${prefix}-3`]);
    expect([...seen].sort()).toEqual(seen);

    const { runId } = await schedules.triggerSchedule({ scheduleId: `${prefix}-1` });
    await schedules.deleteSchedule({ scheduleId: `${prefix}-1` });
    await rejectsWith(schedules.describeSchedule({ scheduleId: `${prefix}-1` }), "NOT_FOUND", /does not exist/);
    const run = await h.client.describeRun({ run: byRunId(runId) });
    expect(run.info?.runId).toBe(runId);
  });
});

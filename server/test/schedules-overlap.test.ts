/**
 * Each overlap policy, driven by TriggerSchedule on schedules that never come
 * due by themselves: the first trigger starts a run that stays open (no worker
 * completes it), the next ones meet it. Ending a run (TerminateRun) lets a
 * buffered firing start: the schedule looks again while a firing waits, and
 * the test waits for the run to appear.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ScheduleOverlapPolicy, ScheduleSkipReason } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { byRunId, startHarness, uniqueId, type Harness } from "./helpers.js";
import { everyMs, scheduleClient, scheduledRuns, triggeredOnly, type ScheduleClient } from "./schedules-support.js";

let h: Harness;
let schedules: ScheduleClient;

beforeAll(async () => {
  h = await startHarness();
  schedules = scheduleClient(h);
});
afterAll(() => h.close());

async function withFirstRun(policy: ScheduleOverlapPolicy): Promise<{ id: string; first: string }> {
  const id = uniqueId(`overlap-${policy}`);
  await schedules.createSchedule({ scheduleId: id, schedule: triggeredOnly(policy) });
  const { runId } = await schedules.triggerSchedule({ scheduleId: id });
  expect(runId).not.toBe("");
  return { id, first: runId };
}

async function status(runId: string): Promise<string> {
  const [row] = await h.sql<{ status: string }[]>`select status from dex.runs where id = ${runId}::uuid`;
  return row!.status;
}

async function runCount(id: string, n: number) {
  return waitFor(async () => {
    const runs = await scheduledRuns(h, id);
    return runs.length === n && runs;
  }, { message: `${n} runs of schedule ${id}` });
}

describe("overlap policies", () => {
  it("SKIP: a firing while the previous run is open is skipped, with the reason", async () => {
    const { id, first } = await withFirstRun(ScheduleOverlapPolicy.SKIP);
    const second = await schedules.triggerSchedule({ scheduleId: id });
    expect(second).toMatchObject({ runId: "", buffered: false, skipReason: ScheduleSkipReason.OVERLAP });
    const { info } = await schedules.describeSchedule({ scheduleId: id });
    expect(Number(info!.overlapSkipped)).toBe(1);
    expect(info!.recentSkips[0]!.reason).toBe(ScheduleSkipReason.OVERLAP);
    await h.client.terminateRun({ run: byRunId(first), reason: "test" });
    expect((await schedules.triggerSchedule({ scheduleId: id })).runId).not.toBe("");
  });

  it("BUFFER_ONE: one firing waits and starts when the run ends; a third is skipped", async () => {
    const { id, first } = await withFirstRun(ScheduleOverlapPolicy.BUFFER_ONE);
    expect(await schedules.triggerSchedule({ scheduleId: id })).toMatchObject({ runId: "", buffered: true });
    expect(await schedules.triggerSchedule({ scheduleId: id })).toMatchObject({ buffered: false, skipReason: ScheduleSkipReason.OVERLAP });
    expect((await schedules.describeSchedule({ scheduleId: id })).info!.bufferedTimes).toHaveLength(1);
    await h.client.terminateRun({ run: byRunId(first), reason: "test" });
    const runs = await runCount(id, 2);
    expect(runs.filter((r) => r.status === "CREATED")).toHaveLength(1);
    expect((await schedules.describeSchedule({ scheduleId: id })).info!.bufferedTimes).toHaveLength(0);
  });

  it("BUFFER_ALL: every firing waits, and they start one after another as each run ends", async () => {
    const { id, first } = await withFirstRun(ScheduleOverlapPolicy.BUFFER_ALL);
    for (let i = 0; i < 2; i++) expect((await schedules.triggerSchedule({ scheduleId: id })).buffered).toBe(true);
    await h.client.terminateRun({ run: byRunId(first), reason: "test" });
    const two = await runCount(id, 2);
    const second = two.find((r) => r.id !== first)!;
    // The third waits for the second: it is still open.
    expect((await schedules.describeSchedule({ scheduleId: id })).info!.bufferedTimes).toHaveLength(1);
    await h.client.terminateRun({ run: byRunId(second.id), reason: "test" });
    const three = await runCount(id, 3);
    expect(three.map((r) => r.nominalMs)).toEqual([...three.map((r) => r.nominalMs)].sort((a, b) => a - b));
  });

  it("BUFFER_ALL with an action limit: buffered scheduled starts spend it, and no more wait than it allows", async () => {
    const id = uniqueId("overlap-limit");
    // Paused until the trigger's run is open, so the first scheduled time meets it.
    await schedules.createSchedule({ scheduleId: id, schedule: everyMs(1_000, ScheduleOverlapPolicy.BUFFER_ALL), paused: true, remainingActions: 1 });
    const { runId: first } = await schedules.triggerSchedule({ scheduleId: id });
    expect(first).not.toBe("");
    await schedules.resumeSchedule({ scheduleId: id });
    // Two scheduled times meet the open run: one waits, the next finds the one action promised.
    await waitFor(async () => {
      const { info } = await schedules.describeSchedule({ scheduleId: id });
      return info!.bufferedTimes.length + Number(info!.overlapSkipped) >= 2;
    }, { message: `two scheduled times of ${id} met the open run` });
    await h.client.terminateRun({ run: byRunId(first), reason: "test" });
    await runCount(id, 2);
    const { info } = await schedules.describeSchedule({ scheduleId: id });
    expect(info!.remainingActions).toBe(0);
    expect(info!.bufferedTimes).toHaveLength(0);
    expect(info!.nextActionTimes).toEqual([]);
  });

  it("CANCEL_OTHER: the open run is asked to cancel and the firing starts once it ended", async () => {
    const { id, first } = await withFirstRun(ScheduleOverlapPolicy.CANCEL_OTHER);
    expect((await schedules.triggerSchedule({ scheduleId: id })).buffered).toBe(true);
    const [row] = await h.sql<{ requested: Date | null }[]>`select cancel_requested_at as requested from dex.runs where id = ${first}::uuid`;
    expect(row!.requested).not.toBeNull();
    expect(await status(first)).not.toBe("TERMINATED");
    // The workflow would end itself on the request; here the test ends it.
    await h.client.terminateRun({ run: byRunId(first), reason: "test" });
    await runCount(id, 2);
  });

  it("TERMINATE_OTHER: the open run is terminated and the firing starts at once", async () => {
    const { id, first } = await withFirstRun(ScheduleOverlapPolicy.TERMINATE_OTHER);
    const second = await schedules.triggerSchedule({ scheduleId: id });
    expect(second.runId).not.toBe("");
    expect(await status(first)).toBe("TERMINATED");
    expect(await status(second.runId)).toBe("CREATED");
  });

  // One transaction fires several times: the run it started for one time is invisible to any other
  // transaction, so the next time must end it (or ask it to cancel) in this one.
  async function backfillThree(policy: ScheduleOverlapPolicy) {
    const id = uniqueId(`backfill-${policy}`);
    await schedules.createSchedule({
      scheduleId: id,
      schedule: { ...triggeredOnly(policy), spec: { cronExpressions: ["0 * * * *"] } },
      paused: true,
    });
    const from = 1_767_225_600n;
    const counts = await schedules.backfillSchedule({ scheduleId: id, startTime: { seconds: from }, endTime: { seconds: from + 2n * 3600n } });
    return { id, counts, runs: await scheduledRuns(h, id) };
  }

  it("TERMINATE_OTHER: a backfill of three times leaves one open run, the others terminated", async () => {
    const { counts, runs } = await backfillThree(ScheduleOverlapPolicy.TERMINATE_OTHER);
    expect(counts).toMatchObject({ started: 3 });
    expect(runs.map((r) => r.status)).toEqual(["TERMINATED", "TERMINATED", "CREATED"]);
  });

  it("CANCEL_OTHER: a backfill of three times asks the run it started to cancel, and the newest time waits", async () => {
    const { id, counts, runs } = await backfillThree(ScheduleOverlapPolicy.CANCEL_OTHER);
    expect(counts).toMatchObject({ started: 1, buffered: 2 });
    expect(runs).toHaveLength(1);
    const [row] = await h.sql<{ requested: Date | null }[]>`select cancel_requested_at as requested from dex.runs where id = ${runs[0]!.id}::uuid`;
    expect(row!.requested).not.toBeNull();
    expect((await schedules.describeSchedule({ scheduleId: id })).info!.bufferedTimes).toHaveLength(1);
  });

  it("ALLOW_ALL: firings start whatever is open", async () => {
    const { id } = await withFirstRun(ScheduleOverlapPolicy.ALLOW_ALL);
    expect((await schedules.triggerSchedule({ scheduleId: id })).runId).not.toBe("");
    const runs = await scheduledRuns(h, id);
    expect(runs.map((r) => r.status)).toEqual(["CREATED", "CREATED"]);
  });
});

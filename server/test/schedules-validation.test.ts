/** Bad ScheduleService input gets INVALID_ARGUMENT (or NOT_FOUND / ALREADY_EXISTS) with a message saying what to fix. */
import { afterAll, beforeAll, describe, it } from "vitest";
import { ScheduleOverlapPolicy } from "@dex/proto";
import { rejectsWith, startHarness, uniqueId, type Harness } from "./helpers.js";
import { everyMs, scheduleClient, triggeredOnly, type ScheduleClient } from "./schedules-support.js";

let h: Harness;
let schedules: ScheduleClient;

beforeAll(async () => {
  h = await startHarness();
  schedules = scheduleClient(h);
});
afterAll(() => h.close());

function withSpec(spec: Record<string, unknown>) {
  return { ...triggeredOnly(ScheduleOverlapPolicy.SKIP), spec };
}

describe("schedule validation", () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ["a cron value out of range", { cronExpressions: ["61 * * * * *"] }, /cron_expressions\[0\] "61 \* \* \* \* \*" is not a valid cron expression/],
    ["a cron with 3 fields", { cronExpressions: ["* * *"] }, /has 3 fields; use 5/],
    ["an impossible date", { cronExpressions: ["0 0 30 2 *"] }, /is not a valid cron expression/],
    ["an unknown time zone", { cronExpressions: ["0 * * * *"], timeZone: "Mars/Olympus" }, /time_zone "Mars\/Olympus" is not a known IANA time zone/],
    ["no cron and no interval", {}, /needs at least one of cron_expressions or intervals/],
    ["an interval under 1 s", { intervals: [{ every: { nanos: 500_000_000 } }] }, /intervals\[0\]\.every must be whole milliseconds from 1s/],
    ["an interval without every", { intervals: [{}] }, /intervals\[0\]\.every is required/],
    ["an offset of a whole period", { intervals: [{ every: { seconds: 60n }, offset: { seconds: 60n } }] }, /offset must be whole milliseconds from 0 up to/],
    ["an end before the start", { cronExpressions: ["0 * * * *"], startTime: { seconds: 2_000n }, endTime: { seconds: 1_000n } }, /end_time must be after start_time/],
    ["a jitter over a day", { cronExpressions: ["0 * * * *"], jitter: { seconds: 90_000n } }, /jitter is too long/],
  ];
  for (const [what, spec, message] of cases) {
    it(`rejects ${what}`, async () => {
      await rejectsWith(schedules.createSchedule({ scheduleId: uniqueId("bad"), schedule: withSpec(spec) }), "INVALID_ARGUMENT", message);
    });
  }

  it("rejects a missing schedule, action or workflow name, a long id and bad numbers", async () => {
    await rejectsWith(schedules.createSchedule({ scheduleId: "x" }), "INVALID_ARGUMENT", /schedule is required/);
    await rejectsWith(schedules.createSchedule({ scheduleId: "x", schedule: { spec: everyMs(1_000).spec } }), "INVALID_ARGUMENT", /schedule\.action is required/);
    await rejectsWith(
      schedules.createSchedule({ scheduleId: "x", schedule: { ...everyMs(1_000), action: { workflowName: "" } } }),
      "INVALID_ARGUMENT",
      /schedule\.action\.workflow_name is required/,
    );
    await rejectsWith(schedules.createSchedule({ scheduleId: "", schedule: everyMs(1_000) }), "INVALID_ARGUMENT", /schedule_id is required/);
    await rejectsWith(schedules.createSchedule({ scheduleId: "s".repeat(201), schedule: everyMs(1_000) }), "INVALID_ARGUMENT", /schedule_id is too long/);
    await rejectsWith(schedules.createSchedule({ scheduleId: "x", schedule: everyMs(1_000), remainingActions: -1 }), "INVALID_ARGUMENT", /remaining_actions must be an integer from 0/);
    await rejectsWith(
      schedules.createSchedule({ scheduleId: "x", schedule: { ...everyMs(1_000), policies: { overlapPolicy: 99 as ScheduleOverlapPolicy } } }),
      "INVALID_ARGUMENT",
      /overlap_policy has an unknown value 99/,
    );
    await rejectsWith(
      schedules.createSchedule({ scheduleId: "x", schedule: { ...everyMs(1_000), policies: { catchupWindow: { nanos: 1_000_000 } } } }),
      "INVALID_ARGUMENT",
      /catchup_window must be at least 1s/,
    );
    await rejectsWith(schedules.listSchedules({ pageToken: "not a token!" }), "INVALID_ARGUMENT", /page_token is not a token/);
    // Well-formed base64url that decodes to what no token holds: a NUL ("AA"), invalid UTF-8 ("_w").
    for (const pageToken of ["AA", "_w"]) {
      await rejectsWith(schedules.listSchedules({ pageToken }), "INVALID_ARGUMENT", /page_token is not a token/);
    }
  });

  it("answers NOT_FOUND for an unknown schedule or queue, ALREADY_EXISTS for a taken id", async () => {
    const id = uniqueId("taken");
    await rejectsWith(
      schedules.createSchedule({ scheduleId: id, schedule: { ...everyMs(1_000), action: { workflowName: "wf", taskQueue: "nope" } } }),
      "NOT_FOUND",
      /workflow task queue "nope" does not exist; create it first/,
    );
    await schedules.createSchedule({ scheduleId: id, schedule: triggeredOnly(ScheduleOverlapPolicy.SKIP) });
    await rejectsWith(schedules.createSchedule({ scheduleId: id, schedule: triggeredOnly(ScheduleOverlapPolicy.SKIP) }), "ALREADY_EXISTS", /already exists/);
    for (const call of [
      () => schedules.pauseSchedule({ scheduleId: "missing" }),
      () => schedules.resumeSchedule({ scheduleId: "missing" }),
      () => schedules.triggerSchedule({ scheduleId: "missing" }),
      () => schedules.describeSchedule({ scheduleId: "missing" }),
      () => schedules.deleteSchedule({ scheduleId: "missing" }),
      () => schedules.updateSchedule({ scheduleId: "missing", schedule: triggeredOnly(ScheduleOverlapPolicy.SKIP) }),
    ]) {
      await rejectsWith(call(), "NOT_FOUND", /schedule "missing" does not exist/);
    }
    await rejectsWith(
      schedules.backfillSchedule({ scheduleId: id, startTime: { seconds: 2_000n }, endTime: { seconds: 1_000n } }),
      "INVALID_ARGUMENT",
      /end_time must not be before start_time/,
    );
  });
});

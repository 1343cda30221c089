/**
 * Activity timeouts and heartbeats (docs/worker-protocol.md, "Activity
 * timeouts and heartbeats"): start-to-close caps an attempt even while it
 * heartbeats, the heartbeat timeout is the lease, schedule-to-close ends the
 * activity for good, and a heartbeat answers whether cancellation was requested.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { FailureKind, TimeoutType } from "@dex/proto";
import { waitFor } from "@dex/testing";
import {
  byRunId,
  completeRun,
  fromJson,
  json,
  kinds,
  pollActivityOf,
  pollWorkflowTaskOf,
  scheduleActivity,
  startHarness,
  startWith,
  type Harness,
} from "./helpers.js";

const ms = (n: number) => ({ seconds: BigInt(Math.floor(n / 1000)), nanos: (n % 1000) * 1e6 });
const retry = (maximumAttempts: number, initialMs = 100) => ({
  retryPolicy: { initialInterval: ms(initialMs), backoffCoefficient: 2, maximumAttempts },
});

function isNotFound(err: unknown): boolean {
  return (err as { code?: string }).code === "NOT_FOUND";
}

/** The activity_failed event of `seq` among a task's new events. */
function activityFailed(task: Awaited<ReturnType<typeof pollWorkflowTaskOf>>, seq: number) {
  for (const event of task.newEvents) {
    const a = event.attributes;
    if (a.case === "activityFailed" && a.value.seq === seq) return a.value;
  }
  throw new Error(`no activity_failed for seq ${seq} in ${kinds(task.newEvents).join(", ")}`);
}

describe("activity timeouts and heartbeats", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("start-to-close caps an attempt even while it heartbeats", async () => {
    const runId = await startWith(h, [
      scheduleActivity(1, "capped", { startToCloseTimeout: ms(1_200), heartbeatTimeout: ms(500), ...retry(1) }),
    ]);
    const task = await pollActivityOf(h, runId, 1);
    const [row] = await h.sql<{ attempt_deadline: Date }[]>`
      select attempt_deadline from dex.activity_tasks where run_id = ${runId} and seq = 1`;
    const cap = row!.attempt_deadline.getTime();
    // The first lease is the heartbeat timeout, well inside the cap.
    expect(timestampDate(task.leaseDeadline!).getTime()).toBeLessThan(cap);
    // Heartbeat like a worker would, every 100 ms: each extends the lease by
    // 500 ms but never past the cap, and once the cap has passed the attempt is
    // over: the heartbeat answers NOT_FOUND.
    const leases: number[] = [];
    await waitFor(
      async () => {
        try {
          const beat = await h.worker.heartbeatActivityTask({ taskToken: task.taskToken, details: json({ beat: leases.length }) });
          leases.push(timestampDate(beat.leaseDeadline!).getTime());
          return false;
        } catch (err) {
          if (isNotFound(err)) return true;
          throw err;
        }
      },
      { intervalMs: 100, message: "the heartbeat to be refused after the start-to-close cap" },
    );
    expect(leases.length).toBeGreaterThan(0);
    for (const lease of leases) expect(lease).toBeLessThanOrEqual(cap);
    // The last extensions were cut to the cap itself.
    expect(leases.at(-1)).toBe(cap);
    // The reaper times the attempt out; with one attempt allowed, the workflow hears of it.
    const wf = await pollWorkflowTaskOf(h, runId);
    const failed = activityFailed(wf, 1);
    expect(failed.attempt).toBe(1);
    expect(failed.failure).toMatchObject({ kind: FailureKind.TIMEOUT, timeoutType: TimeoutType.START_TO_CLOSE });
    await expect(h.worker.completeActivityTask({ taskToken: task.taskToken, result: json("late") })).rejects.toMatchObject({
      code: "NOT_FOUND",
    });
  });

  it("a missed heartbeat times the attempt out; the next attempt gets attempt + 1 and the last details", async () => {
    const runId = await startWith(h, [
      scheduleActivity(1, "beating", { startToCloseTimeout: ms(60_000), heartbeatTimeout: ms(300), ...retry(3) }),
    ]);
    const first = await pollActivityOf(h, runId, 1);
    expect(first.attempt).toBe(1);
    expect(first.heartbeatTimeout).toMatchObject(ms(300));
    await h.worker.heartbeatActivityTask({ taskToken: first.taskToken, details: json({ progress: 1 }) });
    await h.worker.heartbeatActivityTask({ taskToken: first.taskToken, details: json({ progress: 2 }) });
    // A heartbeat without details keeps the last ones.
    await h.worker.heartbeatActivityTask({ taskToken: first.taskToken });
    // ...and then the worker goes silent.
    const second = await pollActivityOf(h, runId, 1);
    expect(second.attempt).toBe(2);
    expect(fromJson(second.heartbeatDetails)).toEqual({ progress: 2 });
    const described = await h.client.describeRun({ run: byRunId(runId) });
    expect(described.pendingActivities[0]!.lastFailure).toMatchObject({
      kind: FailureKind.TIMEOUT,
      timeoutType: TimeoutType.HEARTBEAT,
    });
    // The silent attempt is fenced off.
    await expect(h.worker.heartbeatActivityTask({ taskToken: first.taskToken })).rejects.toMatchObject({ code: "NOT_FOUND" });
    await h.worker.completeActivityTask({ taskToken: second.taskToken, result: json("resumed") });
    const wf = await pollWorkflowTaskOf(h, runId);
    expect(kinds(wf.newEvents)).toEqual(["activityCompleted"]);
    await h.worker.completeWorkflowTask({ taskToken: wf.taskToken, commands: [completeRun("ok")] });
  });

  it("schedule-to-close cuts a running attempt: TIMEOUT / SCHEDULE_TO_CLOSE, not retried, recorded in history", async () => {
    const runId = await startWith(h, [
      scheduleActivity(1, "too-slow", { scheduleToCloseTimeout: ms(500), startToCloseTimeout: ms(60_000), ...retry(0) }),
    ]);
    const task = await pollActivityOf(h, runId, 1);
    const [row] = await h.sql<{ deadline: Date }[]>`
      select schedule_to_close_deadline as deadline from dex.activity_tasks where run_id = ${runId} and seq = 1`;
    // The lease ends at the schedule-to-close deadline, not after start-to-close.
    expect(timestampDate(task.leaseDeadline!).getTime()).toBe(row!.deadline.getTime());
    const wf = await pollWorkflowTaskOf(h, runId);
    const failed = activityFailed(wf, 1);
    expect(failed.failure).toMatchObject({ kind: FailureKind.TIMEOUT, timeoutType: TimeoutType.SCHEDULE_TO_CLOSE });
    expect(await h.sql`select 1 from dex.activity_tasks where run_id = ${runId}`).toHaveLength(0);
    await h.worker.completeWorkflowTask({ taskToken: wf.taskToken, commands: [completeRun("gave up")] });
    const { events } = await h.client.getRunHistory({ run: byRunId(runId) });
    const recorded = events.find((e) => e.attributes.case === "activityFailed")!.attributes;
    expect(recorded.case === "activityFailed" && recorded.value.failure?.timeoutType).toBe(TimeoutType.SCHEDULE_TO_CLOSE);
    expect(kinds(events).filter((k) => k === "activityFailed")).toHaveLength(1);
  });

  it("schedule-to-close also ends retries whose back-off would pass the deadline", async () => {
    const runId = await startWith(h, [
      scheduleActivity(1, "flaky", { scheduleToCloseTimeout: ms(1_000), ...retry(0, 5_000) }),
    ]);
    const task = await pollActivityOf(h, runId, 1);
    const failed = await h.worker.failActivityTask({ taskToken: task.taskToken, failure: { message: "boom", type: "Boom" } });
    expect(failed.willRetry).toBe(false);
    const wf = await pollWorkflowTaskOf(h, runId);
    const event = activityFailed(wf, 1);
    expect(event.failure).toMatchObject({ kind: FailureKind.TIMEOUT, timeoutType: TimeoutType.SCHEDULE_TO_CLOSE });
    expect(event.failure?.cause).toMatchObject({ message: "boom", type: "Boom" });
  });

  it("a heartbeat answers cancel_requested once the workflow cancels the activity, and the attempt is not retried", async () => {
    // Timer 2 (zero) gives the run a second task while activity 1 runs.
    const runId = await startWith(h, [
      scheduleActivity(1, "cancellable", { heartbeatTimeout: ms(30_000), ...retry(0) }),
      { command: { case: "startTimer" as const, value: { seq: 2, duration: ms(0) } } },
    ]);
    const activity = await pollActivityOf(h, runId, 1);
    expect((await h.worker.heartbeatActivityTask({ taskToken: activity.taskToken })).cancelRequested).toBe(false);
    const wf = await pollWorkflowTaskOf(h, runId);
    expect(kinds(wf.newEvents)).toEqual(["timerFired"]);
    await h.worker.completeWorkflowTask({
      taskToken: wf.taskToken,
      commands: [{ command: { case: "requestCancelActivity" as const, value: { seq: 1 } } }],
    });
    const beat = await h.worker.heartbeatActivityTask({ taskToken: activity.taskToken, details: json("stopping") });
    expect(beat.cancelRequested).toBe(true);
    // A retryable failure of a cancelled activity is final: the workflow gave up on it.
    const failed = await h.worker.failActivityTask({ taskToken: activity.taskToken, failure: { message: "cancelled", type: "Cancelled" } });
    expect(failed.willRetry).toBe(false);
    const next = await pollWorkflowTaskOf(h, runId);
    expect(activityFailed(next, 1).failure?.message).toBe("cancelled");
    expect(await h.sql`select 1 from dex.activity_tasks where run_id = ${runId}`).toHaveLength(0);
  });

  it("a cancelled activity whose lease runs out is not retried either", async () => {
    const runId = await startWith(h, [
      scheduleActivity(1, "silent", { heartbeatTimeout: ms(1_000), ...retry(0) }),
      { command: { case: "startTimer" as const, value: { seq: 2, duration: ms(0) } } },
    ]);
    await pollActivityOf(h, runId, 1);
    const wf = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({
      taskToken: wf.taskToken,
      commands: [{ command: { case: "requestCancelActivity" as const, value: { seq: 1 } } }],
    });
    const next = await pollWorkflowTaskOf(h, runId);
    const failed = activityFailed(next, 1);
    expect(failed.attempt).toBe(1);
    expect(failed.failure).toMatchObject({ kind: FailureKind.TIMEOUT, timeoutType: TimeoutType.HEARTBEAT });
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FailureKind, TimeoutType } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { byRunId, json, kinds, pollActivityOf, pollWorkflowTaskOf, scheduleActivity, startHarness, startWith, type Harness } from "./helpers.js";

const fastRetry = (maximumAttempts: number, extra: Record<string, unknown> = {}) => ({
  retryPolicy: { initialInterval: { nanos: 100_000_000 }, backoffCoefficient: 2, maximumAttempts, ...extra },
});

describe("activity retries, failures and the lease reaper", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("retries with back-off and attempt numbers, then records the final failure", async () => {
    const runId = await startWith(h, [scheduleActivity(1, "flaky", fastRetry(3))]);
    // The server computes next = now + delay with `now` inside the call, so
    // delay lies in [next - after, next - before]: exact, whatever the latency.
    const delays: Array<[number, number]> = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      const task = await pollActivityOf(h, runId, 1);
      expect(task.attempt).toBe(attempt);
      const before = Date.now();
      const failed = await h.worker.failActivityTask({
        taskToken: task.taskToken,
        failure: { message: `boom ${attempt}`, type: "Boom" },
      });
      expect(failed.willRetry).toBe(attempt < 3);
      if (failed.willRetry) {
        const next = Number(failed.nextAttemptTime!.seconds) * 1000 + failed.nextAttemptTime!.nanos / 1e6;
        delays.push([next - Date.now() - 1, next - before + 1]);
        const described = await h.client.describeRun({ run: byRunId(runId) });
        const pending = described.pendingActivities[0]!;
        expect(pending).toMatchObject({ seq: 1, attempt: attempt + 1, running: false });
        expect(pending.lastFailure?.message).toBe(`boom ${attempt}`);
        // The reason is computed on the server during the call: if the answer is here before the next
        // attempt is due, the server saw the back-off; later (a loaded machine), it may already see the wait.
        expect(pending.waitingReason).toMatch(Date.now() < next ? /backing off/ : /backing off|waiting for a worker/);
        // Retries add no history.
        expect((await h.client.getRunHistory({ run: byRunId(runId) })).events).toHaveLength(3);
      }
    }
    // min(100 ms × 2^(attempt-1), max): 100 ms, then 200 ms.
    for (const [i, expected] of [100, 200].entries()) {
      expect(delays[i]![0]).toBeLessThanOrEqual(expected);
      expect(delays[i]![1]).toBeGreaterThanOrEqual(expected);
    }
    const task = await pollWorkflowTaskOf(h, runId);
    expect(kinds(task.newEvents)).toEqual(["activityFailed"]);
    const failed = task.newEvents[0]!.attributes;
    expect(failed.case).toBe("activityFailed");
    if (failed.case === "activityFailed") {
      expect(failed.value).toMatchObject({ seq: 1, attempt: 3 });
      expect(failed.value.failure).toMatchObject({ message: "boom 3", type: "Boom" });
    }
    expect((await h.client.describeRun({ run: byRunId(runId) })).pendingActivities).toEqual([]);
  });

  it("does not retry a non-retryable failure, or a type listed as non-retryable", async () => {
    const runId = await startWith(h, [
      scheduleActivity(1, "a", fastRetry(0)),
      scheduleActivity(2, "b", fastRetry(0, { nonRetryableErrorTypes: ["Fatal"] })),
    ]);
    const a = await pollActivityOf(h, runId, 1);
    const b = await pollActivityOf(h, runId, 2);
    expect((await h.worker.failActivityTask({ taskToken: a.taskToken, failure: { message: "no", nonRetryable: true } })).willRetry).toBe(false);
    expect((await h.worker.failActivityTask({ taskToken: b.taskToken, failure: { message: "no", type: "Fatal" } })).willRetry).toBe(false);
    const task = await pollWorkflowTaskOf(h, runId);
    expect(kinds(task.newEvents)).toEqual(["activityFailed", "activityFailed"]);
  });

  it("honours next_retry_delay from the worker", async () => {
    const runId = await startWith(h, [scheduleActivity(1, "a", fastRetry(0))]);
    const task = await pollActivityOf(h, runId, 1);
    const before = Date.now();
    const failed = await h.worker.failActivityTask({
      taskToken: task.taskToken,
      failure: { message: "later" },
      nextRetryDelay: { seconds: 3600n },
    });
    expect(failed.willRetry).toBe(true);
    expect(Number(failed.nextAttemptTime!.seconds) * 1000).toBeGreaterThan(before + 3_500_000);
  });

  it("an expired lease is a start-to-close timeout: the reaper makes the next attempt available", async () => {
    const runId = await startWith(h, [
      scheduleActivity(1, "slow", { ...fastRetry(2), startToCloseTimeout: { nanos: 300_000_000 } }),
    ]);
    const first = await pollActivityOf(h, runId, 1);
    expect(first.attempt).toBe(1);
    expect(first.startToCloseTimeout).toMatchObject({ seconds: 0n, nanos: 300_000_000 });
    // Never completed: within about a second of the lease ending the reaper fails the attempt.
    const second = await pollActivityOf(h, runId, 1);
    expect(second.attempt).toBe(2);
    const described = await h.client.describeRun({ run: byRunId(runId) });
    expect(described.pendingActivities[0]!.lastFailure).toMatchObject({
      kind: FailureKind.TIMEOUT,
      timeoutType: TimeoutType.START_TO_CLOSE,
    });
    // The late first attempt cannot complete any more.
    await expect(h.worker.completeActivityTask({ taskToken: first.taskToken, result: json("late") })).rejects.toMatchObject({
      code: "NOT_FOUND",
    });
    // The second attempt times out too: attempts exhausted, the workflow hears of it.
    const task = await pollWorkflowTaskOf(h, runId);
    const failed = task.newEvents[0]!.attributes;
    expect(failed.case === "activityFailed" && failed.value.attempt).toBe(2);
    expect(failed.case === "activityFailed" && failed.value.failure?.timeoutType).toBe(TimeoutType.START_TO_CLOSE);
  });

  it("heartbeats extend the lease, store details and hand them to the next attempt", async () => {
    const runId = await startWith(h, [
      scheduleActivity(1, "beating", { ...fastRetry(0), heartbeatTimeout: { seconds: 30n } }),
    ]);
    const task = await pollActivityOf(h, runId, 1);
    const beat = await h.worker.heartbeatActivityTask({ taskToken: task.taskToken, details: json({ progress: 7 }) });
    expect(beat.cancelRequested).toBe(false);
    expect(Number(beat.leaseDeadline!.seconds) * 1000).toBeGreaterThan(Date.now() + 25_000);
    await h.worker.failActivityTask({ taskToken: task.taskToken, failure: { message: "crash" } });
    const next = await pollActivityOf(h, runId, 1);
    expect(next.attempt).toBe(2);
    expect(new TextDecoder().decode(next.heartbeatDetails!.data)).toBe('{"progress":7}');
  });

  it("fails for good when the schedule-to-close deadline passes while nobody polls", async () => {
    await h.queues.createTaskQueue({ name: "nobody-polls", type: 2 });
    const runId = await startWith(h, [
      scheduleActivity(1, "never-picked", { taskQueue: "nobody-polls", scheduleToCloseTimeout: { nanos: 200_000_000 } }),
    ]);
    const task = await pollWorkflowTaskOf(h, runId);
    const failed = task.newEvents[0]!.attributes;
    expect(failed.case).toBe("activityFailed");
    expect(failed.case === "activityFailed" && failed.value.failure?.timeoutType).toBe(TimeoutType.SCHEDULE_TO_CLOSE);
    await waitFor(async () => (await h.client.describeRun({ run: byRunId(runId) })).pendingActivities.length === 0);
  });
});

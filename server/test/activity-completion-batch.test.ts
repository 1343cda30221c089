/**
 * Activity completions share transactions (engine/activity-completions.ts): completions arriving
 * together are written by one statement. What a completion guarantees must not change: fenced by
 * its token, recorded exactly once, a run whose row another transaction holds is not skipped but
 * waited for, and tokens of unreleased builds (version 1, no attempt) are refused, writing nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError } from "@dex/proto";
import { waitFor } from "@dex/testing";
import {
  groupCommitStats,
  holdRunLock,
  json,
  pollActivityOf,
  pollWorkflowTaskOf,
  scheduleActivity,
  serverLockWaiters,
  startHarness,
  uniqueId,
  type Harness,
} from "./helpers.js";

async function code(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "OK",
    (err: unknown) => (err instanceof DexError ? err.code : `not a DexError: ${String(err)}`),
  );
}

/** Starts a run whose first workflow task schedules activities 1..count; returns the run id. */
async function runWithActivities(h: Harness, count: number): Promise<string> {
  const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("batch") });
  const task = await pollWorkflowTaskOf(h, runId);
  const commands = Array.from({ length: count }, (_, i) => scheduleActivity(i + 1, "a"));
  await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands });
  return runId;
}

async function inboxCount(h: Harness, runId: string): Promise<number> {
  const [row] = await h.sql<{ count: number }[]>`select count(*)::int as count from dex.inbox where run_id = ${runId}`;
  return row!.count;
}

describe("activity completions share transactions", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ metricsPort: 0 });
  });
  afterAll(async () => {
    await h.close();
  });

  it("concurrent completions are batched, each recorded once; repeated tokens answer NOT_FOUND", async () => {
    const runs = await Promise.all(Array.from({ length: 20 }, () => runWithActivities(h, 2)));
    const tasks = await Promise.all(runs.flatMap((runId) => [pollActivityOf(h, runId, 1), pollActivityOf(h, runId, 2)]));
    const before = await groupCommitStats(h, "activity_completion");
    // Each token twice, all at once: the first of each pair may win, never both.
    const codes = await Promise.all(
      [...tasks, ...tasks].map((task, i) => code(h.worker.completeActivityTask({ taskToken: task.taskToken, result: json(i) }))),
    );
    expect(codes.filter((c) => c === "OK")).toHaveLength(tasks.length);
    expect(codes.filter((c) => c === "NOT_FOUND")).toHaveLength(tasks.length);
    for (const runId of runs) expect(await inboxCount(h, runId)).toBe(2);
    const [{ tasks: workflowTasks } = { tasks: -1 }] = await h.sql<{ tasks: number }[]>`
      select count(*)::int as tasks from dex.workflow_tasks where run_id = any(${runs}::uuid[])`;
    expect(workflowTasks).toBe(runs.length);
    const after = await groupCommitStats(h, "activity_completion");
    // Every winning completion went through a batch, and fewer batches than completions were written.
    expect(after.sum - before.sum).toBe(tasks.length);
    expect(after.count - before.count).toBeLessThan(tasks.length);

    // The next workflow task sees both results, with the attempt the token named.
    const next = await pollWorkflowTaskOf(h, runs[0]!);
    const outcomes = next.newEvents.filter((e) => e.attributes.case === "activityCompleted");
    expect(outcomes.map((e) => e.attributes.case === "activityCompleted" && e.attributes.value.attempt)).toEqual([1, 1]);
  });

  it("a completion whose run another transaction holds waits for it while the others go through", async () => {
    const busy = await runWithActivities(h, 1);
    const free = await runWithActivities(h, 1);
    const busyTask = await pollActivityOf(h, busy, 1);
    const freeTask = await pollActivityOf(h, free, 1);
    const lock = await holdRunLock(h, busy);
    try {
      let busyDone = false;
      const busyCompletion = h.worker.completeActivityTask({ taskToken: busyTask.taskToken, result: json("busy") }).then(() => {
        busyDone = true;
      });
      await h.worker.completeActivityTask({ taskToken: freeTask.taskToken, result: json("free") });
      expect(await inboxCount(h, free)).toBe(1);
      // The busy run's completion is waiting for the run's lock: not lost, not refused.
      await waitFor(async () => (await serverLockWaiters(h)) > 0, { message: "the busy completion to wait for the run lock" });
      expect(busyDone).toBe(false);
      expect(await inboxCount(h, busy)).toBe(0);
      await lock.release();
      await busyCompletion;
      expect(await inboxCount(h, busy)).toBe(1);
    } finally {
      await lock.release();
    }
  });

  it("a version 1 token (no attempt, never released) is refused and writes nothing; the attempt's own token still completes", async () => {
    const runId = await runWithActivities(h, 1);
    const task = await pollActivityOf(h, runId, 1);
    const v2 = Buffer.from(task.taskToken);
    expect(v2[0]).toBe(2);
    // Version 1 layout: the same fields without the attempt (4 bytes after the seq at 38..41).
    const v1 = Buffer.concat([v2.subarray(0, 42), v2.subarray(46)]);
    v1[0] = 1;
    expect(await code(h.worker.completeActivityTask({ taskToken: v1, result: json("old") }))).toBe("INVALID_ARGUMENT");
    expect(await code(h.worker.failActivityTask({ taskToken: v1, failure: { message: "old" } }))).toBe("INVALID_ARGUMENT");
    expect(await code(h.worker.heartbeatActivityTask({ taskToken: v1 }))).toBe("INVALID_ARGUMENT");
    expect(await inboxCount(h, runId)).toBe(0);
    await h.worker.completeActivityTask({ taskToken: task.taskToken, result: json("new") });
    expect(await inboxCount(h, runId)).toBe(1);
  });
});

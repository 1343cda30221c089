import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError } from "@dex/proto";
import { byRunId, completeRun, json, pollActivityOf, pollWorkflowTaskOf, scheduleActivity, startHarness, uniqueId, type Harness } from "./helpers.js";

async function code(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "OK",
    (err: unknown) => (err instanceof DexError ? err.code : `not a DexError: ${String(err)}`),
  );
}

describe("task tokens fence every completion", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("rejects duplicate, stale and forged workflow task tokens and changes nothing", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("tok") });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(1, "a")] });
    const before = await h.client.getRunHistory({ run: byRunId(runId) });

    // Duplicate completion of the same task.
    expect(await code(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("dup")] }))).toBe("NOT_FOUND");
    expect(await code(h.worker.failWorkflowTask({ taskToken: task.taskToken, failure: { message: "x" } }))).toBe("NOT_FOUND");
    // Forged: a real run, a random lease.
    const forged = Uint8Array.from(task.taskToken);
    forged[20] = forged[20]! ^ 0xff;
    expect(await code(h.worker.completeWorkflowTask({ taskToken: forged, commands: [completeRun("forged")] }))).toBe("NOT_FOUND");
    // Garbage and wrong kinds.
    expect(await code(h.worker.completeWorkflowTask({ taskToken: new Uint8Array([1, 2, 3]), commands: [] }))).toBe("INVALID_ARGUMENT");
    expect(await code(h.worker.completeWorkflowTask({ taskToken: new Uint8Array(), commands: [] }))).toBe("INVALID_ARGUMENT");
    const truncated = task.taskToken.subarray(0, task.taskToken.length - 1);
    expect(await code(h.worker.completeWorkflowTask({ taskToken: truncated, commands: [] }))).toBe("INVALID_ARGUMENT");
    expect(await code(h.worker.completeActivityTask({ taskToken: task.taskToken }))).toBe("INVALID_ARGUMENT");

    const after = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(after.events).toEqual(before.events);
  });

  it("a completion with the token of an expired lease loses to the next attempt", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("stale") });
    const first = await pollWorkflowTaskOf(h, runId);
    // Expire the lease (as if 10 s had passed) instead of waiting for it.
    await h.sql`update dex.workflow_tasks set visible_at = now(), leased_until = now() where run_id = ${runId}`;
    const second = await pollWorkflowTaskOf(h, runId, "w2");
    expect(second.attempt).toBe(2);
    expect(await code(h.worker.completeWorkflowTask({ taskToken: first.taskToken, commands: [completeRun("late")] }))).toBe("NOT_FOUND");
    await h.worker.completeWorkflowTask({ taskToken: second.taskToken, commands: [completeRun("on time")] });
    const history = await h.client.getRunHistory({ run: byRunId(runId) });
    const marker = history.events[1]!.attributes;
    expect(marker.case === "workflowTaskCompleted" && marker.value).toMatchObject({ workerId: "w2", attempt: 2 });
    const result = await h.client.getRunResult({ run: byRunId(runId) });
    expect(new TextDecoder().decode(result.result!.data)).toBe('"on time"');
  });

  it("records an activity result exactly once", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("once") });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(1, "a")] });
    const activity = await pollActivityOf(h, runId, 1);
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, i) => code(h.worker.completeActivityTask({ taskToken: activity.taskToken, result: json(i) }))),
    );
    expect(results.filter((r) => r === "OK")).toHaveLength(1);
    expect(results.filter((r) => r === "NOT_FOUND")).toHaveLength(4);
    expect(await code(h.worker.failActivityTask({ taskToken: activity.taskToken, failure: { message: "late" } }))).toBe("NOT_FOUND");
    expect(await code(h.worker.heartbeatActivityTask({ taskToken: activity.taskToken }))).toBe("NOT_FOUND");
    const [{ count } = { count: -1 }] = await h.sql<{ count: number }[]>`
      select count(*)::int as count from dex.inbox where run_id = ${runId}`;
    expect(count).toBe(1);
  });
});

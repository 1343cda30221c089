import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError, InstanceIdConflictPolicy, InstanceIdReusePolicy, RunStatus } from "@dex/proto";
import { byRunId, completeRun, json, pollWorkflowTaskOf, startHarness, uniqueId, type Harness } from "./helpers.js";

async function rejection(promise: Promise<unknown>): Promise<DexError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof DexError)) throw new Error(`expected a DexError, got ${String(err)}`);
  return err;
}

describe("StartWorkflow", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("refuses a second run of an open instance, naming it, and leaves the first untouched", async () => {
    const instanceId = uniqueId("dup");
    const first = await h.client.startWorkflow({ workflowName: "wf", instanceId, input: json(1), requestId: "r1" });
    const before = await h.client.describeRun({ run: byRunId(first.runId) });
    const err = await rejection(h.client.startWorkflow({ workflowName: "other", instanceId, input: json(2), requestId: "r2" }));
    expect(err.code).toBe("ALREADY_EXISTS");
    expect(err.message).toContain(first.runId);
    const after = await h.client.describeRun({ run: byRunId(first.runId) });
    expect(after.info).toEqual(before.info);
    expect(after.input).toEqual(before.input);
    const runs = await h.client.listRuns({ instanceId });
    expect(runs.runs.map((r) => r.runId)).toEqual([first.runId]);
  });

  it("returns the same run for a retried start with the same request id", async () => {
    const instanceId = uniqueId("idem");
    const first = await h.client.startWorkflow({ workflowName: "wf", instanceId, requestId: "req-1" });
    const again = await h.client.startWorkflow({ workflowName: "wf", instanceId, requestId: "req-1" });
    expect(first.started).toBe(true);
    expect(again).toMatchObject({ runId: first.runId, started: false });
    const history = await h.client.getRunHistory({ run: byRunId(first.runId) });
    expect(history.events).toHaveLength(1);
  });

  it("concurrent identical starts create one run", async () => {
    const instanceId = uniqueId("race");
    const results = await Promise.all(
      Array.from({ length: 8 }, () => h.client.startWorkflow({ workflowName: "wf", instanceId, requestId: "same" })),
    );
    expect(new Set(results.map((r) => r.runId)).size).toBe(1);
    expect(results.filter((r) => r.started)).toHaveLength(1);
  });

  it("USE_EXISTING returns the open run", async () => {
    const instanceId = uniqueId("use");
    const first = await h.client.startWorkflow({ workflowName: "wf", instanceId });
    const second = await h.client.startWorkflow({
      workflowName: "wf",
      instanceId,
      conflictPolicy: InstanceIdConflictPolicy.USE_EXISTING,
    });
    expect(second).toMatchObject({ runId: first.runId, started: false });
  });

  it("applies reuse policies once the previous run ended", async () => {
    const instanceId = uniqueId("reuse");
    const first = await h.client.startWorkflow({ workflowName: "wf", instanceId });
    const task = await pollWorkflowTaskOf(h, first.runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun(1)] });

    const rejected = await rejection(
      h.client.startWorkflow({ workflowName: "wf", instanceId, reusePolicy: InstanceIdReusePolicy.REJECT }),
    );
    expect(rejected.code).toBe("ALREADY_EXISTS");
    expect(rejected.message).toContain(first.runId);
    const ifFailed = await rejection(
      h.client.startWorkflow({ workflowName: "wf", instanceId, reusePolicy: InstanceIdReusePolicy.ALLOW_IF_FAILED }),
    );
    expect(ifFailed.code).toBe("ALREADY_EXISTS");
    const second = await h.client.startWorkflow({ workflowName: "wf", instanceId });
    expect(second.started).toBe(true);
    expect(second.runId).not.toBe(first.runId);
    // An instance id names its open run.
    const described = await h.client.describeRun({ run: { target: { case: "instanceId", value: instanceId } } });
    expect(described.info?.runId).toBe(second.runId);
    expect(described.info?.status).toBe(RunStatus.CREATED);
  });

  it("answers NOT_FOUND for a workflow queue that does not exist, and writes nothing", async () => {
    const instanceId = uniqueId("noqueue");
    const err = await rejection(h.client.startWorkflow({ workflowName: "wf", instanceId, taskQueue: "nope" }));
    expect(err.code).toBe("NOT_FOUND");
    expect(err.message).toMatch(/nope.*does not exist/);
    const [{ count } = { count: -1 }] = await h.sql<{ count: number }[]>`select count(*)::int as count from dex.runs where instance_id = ${instanceId}`;
    expect(count).toBe(0);
  });

  it("stores priority (default 50), labels and the concurrency key", async () => {
    const a = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("p") });
    const b = await h.client.startWorkflow({
      workflowName: "wf",
      instanceId: uniqueId("p"),
      priority: 90,
      labels: { team: "x" },
      concurrencyKey: "tenant-1",
    });
    expect((await h.client.describeRun({ run: byRunId(a.runId) })).info?.priority).toBe(50);
    const info = (await h.client.describeRun({ run: byRunId(b.runId) })).info!;
    expect(info).toMatchObject({ priority: 90, labels: { team: "x" }, concurrencyKey: "tenant-1" });
  });
});

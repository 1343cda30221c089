/**
 * Updates across continue-as-new hand-over and reset, combined (decisions 0024, 0026, 0031): an
 * undelivered update retried meanwhile, continue-as-new then reset then continue-as-new with a caller
 * following every hop, a reset while the continuing task is in flight. Written by a review of the
 * three changes that met here; each path holds: nothing carried twice, every caller answered once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResetPointKind } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { byInstance, byRunId, fromJson, pollWorkflowTaskOf, startWith, type Harness, startHarness, uniqueId, watchRunParking, completeUpdate, continueAsNewLeaving, updateClaimOf, inboxDedupKeys } from "./helpers.js";

const NOW = { seconds: 0n, nanos: 0 };

describe("updates across continue-as-new and reset together", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });
  const openRun = async (instanceId: string) => (await h.client.describeRun({ run: byInstance(instanceId) })).info!.runId;

  it("undelivered update retried meanwhile (instance id and run id): the completion is accepted", async () => {
    const instanceId = uniqueId("r4-retry");
    const first = await startWith(h, [], { instanceId });
    await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "u", wait: NOW });
    const task = await pollWorkflowTaskOf(h, first);
    for (const run of [byInstance(instanceId), byRunId(first)]) {
      expect(await h.client.updateRun({ run, name: "add", updateId: "u", wait: NOW })).toMatchObject({ stillRunning: true, runId: first });
    }
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNewLeaving(["u"])] });
    const next = await openRun(instanceId);
    expect(await inboxDedupKeys(h, next)).toEqual(["update:u"]);
    expect(await updateClaimOf(h, next, "u")).toBe(next);
  });

  it("continue-as-new then reset: the undelivered update is re-delivered once and its claim follows; a waiter on the first run is answered", async () => {
    const instanceId = uniqueId("r4-can-reset");
    const first = await startWith(h, [], { instanceId });
    await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "u", wait: NOW });
    const task = await pollWorkflowTaskOf(h, first);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNewLeaving(["u"])] });
    const second = await openRun(instanceId);
    const t2 = await pollWorkflowTaskOf(h, second);
    await h.worker.completeWorkflowTask({ taskToken: t2.taskToken, commands: [] }); // accepted, handler pending
    const subscribed = watchRunParking();
    try {
      const waiting = h.client.updateRun({ run: byRunId(first), name: "add", updateId: "u", wait: { seconds: 20n } });
      await waitFor(async () => subscribed.parked(second) > 0, { message: "waiter follows to the second run" });
      const reset = await h.client.resetRun({ run: byRunId(second), to: ResetPointKind.FIRST_WORKFLOW_TASK });
      expect(await inboxDedupKeys(h, reset.runId)).toEqual(["update:u"]);
      expect(await updateClaimOf(h, reset.runId, "u")).toBe(reset.runId);
      // reset run continues as new before the update is due: carried again
      const t3 = await pollWorkflowTaskOf(h, reset.runId);
      await h.worker.completeWorkflowTask({ taskToken: t3.taskToken, commands: [continueAsNewLeaving(["u"])] });
      const fourth = await openRun(instanceId);
      expect(await updateClaimOf(h, fourth, "u")).toBe(fourth);
      const t4 = await pollWorkflowTaskOf(h, fourth);
      await h.worker.completeWorkflowTask({ taskToken: t4.taskToken, commands: [completeUpdate("u", "done")] });
      const answer = await waiting;
      expect(answer.runId).toBe(fourth);
      expect(fromJson(answer.outcome.value as never)).toBe("done");
    } finally {
      subscribed.restore();
    }
    const retry = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "u", wait: NOW });
    expect(fromJson(retry.outcome.value as never)).toBe("done");
  });

  it("reset while the continuing task is in flight with the update: no double delivery", async () => {
    const instanceId = uniqueId("r4-reset-inflight");
    const first = await startWith(h, [], { instanceId });
    await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "u", wait: NOW });
    const task = await pollWorkflowTaskOf(h, first);
    const reset = await h.client.resetRun({ run: byInstance(instanceId), to: ResetPointKind.FIRST_WORKFLOW_TASK });
    await expect(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNewLeaving(["u"])] })).rejects.toThrow(/NOT_FOUND|not found/i);
    expect(await inboxDedupKeys(h, reset.runId)).toEqual(["update:u"]);
    expect(await updateClaimOf(h, reset.runId, "u")).toBe(reset.runId);
  });
});

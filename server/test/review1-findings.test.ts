/**
 * Review 1 (session 13): failing tests for findings in today's merges. Not for main as is.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResetPointKind } from "@dex/proto";
import { byInstance, byRunId, fromJson, json, pollWorkflowTaskOf, startWith, type Harness, startHarness, uniqueId } from "./helpers.js";

const NOW = { seconds: 0n, nanos: 0 };

function completeUpdate(updateId: string, result: unknown) {
  return { command: { case: "completeUpdate" as const, value: { updateId, result: json(result) } } };
}

describe("review1: update ids per chain vs ResetRun", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("an update accepted before the reset point and completed by the reset run is answered through the instance id", async () => {
    const instanceId = uniqueId("reset-update");
    const first = await startWith(h, [], { instanceId });
    // U accepted by the first run; its handler has not finished.
    expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "u", wait: NOW })).toMatchObject({ stillRunning: true });
    const t2 = await pollWorkflowTaskOf(h, first);
    await h.worker.completeWorkflowTask({ taskToken: t2.taskToken, commands: [] });
    // One more workflow task, so LAST_WORKFLOW_TASK keeps update_accepted.
    await h.client.sendEvent({ run: byRunId(first), eventName: "poke", eventId: "p1", payload: json(1) });
    const t3 = await pollWorkflowTaskOf(h, first);
    await h.worker.completeWorkflowTask({ taskToken: t3.taskToken, commands: [] });

    const reset = await h.client.resetRun({ run: byRunId(first), to: ResetPointKind.LAST_WORKFLOW_TASK });
    const history = (await h.client.getRunHistory({ run: byRunId(reset.runId) })).events;
    expect(history.map((e) => e.attributes.case)).toContain("updateAccepted");
    // The reset run's code runs the handler again and finishes it.
    const t = await pollWorkflowTaskOf(h, reset.runId);
    await h.worker.completeWorkflowTask({ taskToken: t.taskToken, commands: [completeUpdate("u", { ok: 1 })] });

    // Before migration 0016 this retry resolved the reset run and read its update_completed.
    // Now the chain claim still names the terminated first run: FAILED_PRECONDITION.
    const retry = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "u", wait: NOW });
    expect(retry.runId).toBe(reset.runId);
    expect(retry.outcome.case).toBe("result");
    expect(fromJson(retry.outcome.value as never)).toEqual({ ok: 1 });
  });

  it("an update waiting unseen in the inbox at a reset is not lost for good: a retry through the instance id reaches the reset run", async () => {
    const instanceId = uniqueId("reset-update-unseen");
    const first = await startWith(h, [], { instanceId });
    expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "v", wait: NOW })).toMatchObject({ stillRunning: true });
    // Reset before the update was handed out: terminating the old run drops its inbox (updates are not re-delivered).
    const reset = await h.client.resetRun({ run: byRunId(first), to: ResetPointKind.LAST_WORKFLOW_TASK });
    const retry = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "v", wait: NOW });
    // Before 0016: the retry was stored on the reset run (stillRunning there). Now: FAILED_PRECONDITION, forever.
    expect(retry).toMatchObject({ runId: reset.runId, stillRunning: true });
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError, setWorkflowOptions, type WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";

let sideEffectCalls = 0;

async function annotated(ctx: WorkflowContext, input: { fail?: boolean }) {
  const token = await ctx.sideEffect(() => {
    sideEffectCalls++;
    return `token-${Math.floor(Math.random() * 1e9)}`;
  });
  ctx.setStatus("half way");
  ctx.upsertLabels({ stage: "two" });
  await ctx.waitForEvent("continue");
  if (input.fail) {
    const error = new Error("the order is inconsistent", { cause: new RangeError("quantity -1") });
    error.name = "OrderError";
    throw error;
  }
  return token;
}

// An OrderError is a decision of this workflow, not a bug: it fails the run (other errors would only
// fail the workflow task and keep the run open until fixed code is deployed).
setWorkflowOptions(annotated, { failWorkflowOn: ["OrderError"] });

describe("status, labels, side effects, failures and instance-id policies", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ workflowTaskRetry: { initialMs: 50, maxMs: 200 } });
    h.workflowWorker({ annotated });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("records a side effect once, and shows custom status and labels in describe and list", async () => {
    const handle = await h.client.start(annotated, { instanceId: "annotated-1", input: {}, labels: { stage: "one", team: "shop" } });
    const waiting = await waitUntilWaiting(h, handle.runId!);
    expect(waiting.customStatus).toBe("half way");
    expect(waiting.labels).toEqual({ stage: "two", team: "shop" });
    const listed = await h.client.list({ labels: { stage: "two" } });
    expect(listed.runs.map((r) => r.runId)).toContain(handle.runId);
    await handle.sendEvent("continue");
    const token = await handle.result();
    expect(token).toMatch(/^token-\d+$/);
    expect(sideEffectCalls).toBe(1);
    const recorded = (await handle.history()).filter((e) => e.attributes.case === "sideEffectRecorded");
    expect(recorded).toHaveLength(1);
  });

  it("shows a thrown error with its type, stack and cause chain", async () => {
    const handle = await h.client.start(annotated, { instanceId: "failing-1", input: { fail: true } });
    await waitUntilWaiting(h, handle.runId!);
    await handle.sendEvent("continue");
    await expect(handle.result()).rejects.toThrow();
    const description = await handle.describe();
    expect(description.status).toBe("FAILED");
    expect(description.failure).toMatchObject({ message: "the order is inconsistent", type: "OrderError", cause: { message: "quantity -1", type: "RangeError" } });
    expect(description.failure?.stack).toContain("annotated");
  });

  it("applies the conflict policy use-existing and the reuse policies", async () => {
    const first = await h.client.start(annotated, { instanceId: "policy-1", input: {} });
    const same = await h.client.start(annotated, { instanceId: "policy-1", input: {}, conflictPolicy: "use-existing" });
    expect(same.runId).toBe(first.runId);
    await first.terminate("done with it");

    const rejected = await h.client
      .start(annotated, { instanceId: "policy-1", input: {}, reusePolicy: "reject" })
      .then(() => undefined, (e: unknown) => e);
    expect(rejected).toBeInstanceOf(DexError);
    expect((rejected as DexError).code).toBe("ALREADY_EXISTS");
    // The last run was terminated, which counts as failed: allow-if-failed lets a new run start.
    const again = await h.client.start(annotated, { instanceId: "policy-1", input: {}, reusePolicy: "allow-if-failed" });
    expect(again.runId).not.toBe(first.runId);
    await again.terminate("cleanup");
  });
});

async function waitUntilWaiting(h: Harness, runId: string) {
  return waitFor(async () => {
    const d = await h.client.getHandle({ runId }).describe();
    return d.pendingEventWaits.length > 0 ? d : undefined;
  }, { message: "the run to wait for its event" });
}

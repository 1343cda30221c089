import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS } from "@dex/testing";
import { DexError, type WorkflowContext } from "@dex/sdk";
import { startHarness, type Harness } from "../support/harness.js";

async function waitsForever(ctx: WorkflowContext) {
  // Calls an activity no worker serves, so the run stays open.
  return ctx.executeActivity("nobodyServesThis", null);
}

describe("instance ids", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ waitsForever });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("answers ALREADY_EXISTS for a second start while a run is open, leaving the first untouched", async () => {
    const first = await h.client.start(waitsForever, { instanceId: "order-7", input: { v: 1 }, requestId: "req-a" });
    const before = await first.describe();
    const err = await h.client
      .start(waitsForever, { instanceId: "order-7", input: { v: 2 }, requestId: "req-b" })
      .then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(DexError);
    expect((err as DexError).code).toBe("ALREADY_EXISTS");
    expect((err as DexError).message).toContain(first.runId!);
    const after = await first.describe();
    expect(after.input).toEqual({ v: 1 });
    expect(after.runId).toBe(before.runId);
    const runs = await h.client.list({ instanceId: "order-7" });
    expect(runs.runs.map((r) => r.runId)).toEqual([first.runId]);
  });

  it("returns the same run for a retried start with the same request id", async () => {
    const first = await h.client.start(waitsForever, { instanceId: "order-8", requestId: "req-retry" });
    const again = await h.client.start(waitsForever, { instanceId: "order-8", requestId: "req-retry" });
    expect(again.runId).toBe(first.runId);
    const runs = await h.client.list({ instanceId: "order-8" });
    expect(runs.runs).toHaveLength(1);
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError, EventWaitTimeoutError, type WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { TaskQueueType } from "@dex/proto";
import { startHarness, type Harness } from "../support/harness.js";

const activities = {
  async noteReady() {
    return "ready";
  },
};

// Does some work first, so an event can arrive before the wait starts.
async function approval(ctx: WorkflowContext, input: { timeout?: string }) {
  const acts = ctx.activities<typeof activities>();
  await acts.noteReady();
  ctx.setStatus("waiting for approval");
  try {
    const decision = await ctx.waitForEvent<{ approved: boolean }>("approval", input.timeout ? { timeout: input.timeout } : {});
    return { decision };
  } catch (err) {
    if (err instanceof EventWaitTimeoutError) return { timedOut: err.eventId };
    throw err;
  }
}

// Collects every event named in the input, in the order they are awaited.
async function collector(ctx: WorkflowContext, input: { expect: string[] }) {
  const received: unknown[] = [];
  for (const eventId of input.expect) received.push(await ctx.waitForEvent(eventId));
  return received;
}

describe("external events", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ approval, collector });
    h.activityWorker(activities);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("keeps an event sent before the wait and delivers it", async () => {
    // The run's queue has no workflow worker yet, so the event certainly arrives before the wait exists.
    await h.client.raw.queues.createTaskQueue({ name: "later", type: TaskQueueType.WORKFLOW });
    await h.client.raw.queues.createTaskQueue({ name: "later", type: TaskQueueType.ACTIVITY });
    const handle = await h.client.start(approval, { instanceId: "early-1", input: {}, taskQueue: "later" });
    const sent = await handle.sendEvent("approval", { approved: true });
    expect(sent.duplicate).toBe(false);
    h.workflowWorker({ approval }, { taskQueue: "later" });
    h.activityWorker(activities, { taskQueue: "later" });
    expect(await handle.result()).toEqual({ decision: { approved: true } });
    const kinds = (await handle.history()).map((e) => e.attributes.case);
    expect(kinds.indexOf("externalEventReceived")).toBeLessThan(kinds.indexOf("activityCompleted"));
  });

  it("delivers the same event id once, answering duplicate on the second send", async () => {
    const handle = await h.client.start(collector, { instanceId: "dup-1", input: { expect: ["a", "b"] } });
    expect((await handle.sendEvent("a", 1)).duplicate).toBe(false);
    expect((await handle.sendEvent("a", 2)).duplicate).toBe(true);
    expect((await handle.sendEvent("b", 3)).duplicate).toBe(false);
    expect(await handle.result()).toEqual([1, 3]);
    const received = (await handle.history()).filter((e) => e.attributes.case === "externalEventReceived");
    expect(received).toHaveLength(2);
  });

  it("times out a wait with a typed error", async () => {
    const handle = await h.client.start(approval, { instanceId: "timeout-1", input: { timeout: "300ms" } });
    expect(await handle.result()).toEqual({ timedOut: "approval" });
    const description = await handle.describe();
    expect(description.customStatus).toBe("waiting for approval");
  });

  it("shows the awaited event in describe while the run waits", async () => {
    const handle = await h.client.start(approval, { instanceId: "shown-1", input: { timeout: "1h" } });
    const waiting = await waitFor(async () => {
      const d = await handle.describe();
      return d.pendingEventWaits.length ? d : undefined;
    }, { message: "the event wait to show in describe" });
    expect(waiting.pendingEventWaits[0]).toMatchObject({ eventId: "approval" });
    expect(waiting.pendingTimers.length + waiting.pendingEventWaits.length).toBeGreaterThan(0);
    await handle.sendEvent("approval", { approved: false });
    expect(await handle.result()).toEqual({ decision: { approved: false } });
  });

  it("answers NOT_FOUND for an unknown run and FAILED_PRECONDITION for an ended run", async () => {
    const unknown = await h.client.getHandle({ instanceId: "never-started" }).sendEvent("x").then(() => undefined, (e: unknown) => e);
    expect((unknown as DexError).code).toBe("NOT_FOUND");
    const handle = await h.client.start(collector, { instanceId: "ended-1", input: { expect: [] } });
    await handle.result();
    const ended = await handle.sendEvent("late").then(() => undefined, (e: unknown) => e);
    expect((ended as DexError).code).toBe("FAILED_PRECONDITION");
  });

  it("signal-with-start called 20 times at once creates one run and delivers all 20 events", async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `e${i}`);
    const results = await Promise.all(
      ids.map((eventId, i) =>
        h.client.sendEventWithStart(collector, { instanceId: "sws-1", input: { expect: ids }, eventId, payload: i }),
      ),
    );
    expect(new Set(results.map((r) => r.handle.runId)).size).toBe(1);
    expect(results.filter((r) => r.started)).toHaveLength(1);
    expect(results.every((r) => !r.duplicate)).toBe(true);
    const output = await results[0]!.handle.result();
    expect(output).toEqual(ids.map((_, i) => i));
    expect((await h.client.list({ instanceId: "sws-1" })).runs).toHaveLength(1);
  });
});

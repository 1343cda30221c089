/**
 * Queries (issue 14, decision 0023): a running workflow's state read through
 * its query handlers, from a worker that holds the run in its cache and from
 * one that must replay; nothing written to history; the built-in pending
 * query; an ended run answered from its final history; the errors; and a
 * query asked on another server than the one the worker polls.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, createWorkflowWorker, DexError, type WorkflowContext } from "@dex/sdk";
import { startServer, type DexServer } from "@dex/server";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { TaskQueueType } from "@dex/proto";
import { deferred, quietLogger, startHarness, type Harness } from "../support/harness.js";

const gate = deferred<string>();
const activities = {
  async slowStep() {
    return gate.promise;
  },
};

/** Collects items sent as events e0, e1, ... until one says done; optionally runs a slow activity first. */
async function cart(ctx: WorkflowContext, input: { slow?: boolean }) {
  const items: string[] = [];
  ctx.setQueryHandler("items", () => items);
  ctx.setQueryHandler("count", (args: { plus?: number } | undefined) => items.length + (args?.plus ?? 0));
  ctx.setQueryHandler("boom", () => {
    throw new Error("kaboom");
  });
  ctx.setQueryHandler("sneaky", () => {
    void ctx.sleep("1s");
    return "slept";
  });
  if (input.slow) items.push(await ctx.activities<typeof activities>().slowStep());
  for (;;) {
    const event = await ctx.waitForEvent<{ item?: string; done?: boolean }>(`e${items.length}`);
    if (event.done) return items;
    items.push(event.item!);
  }
}

/**
 * Both servers' fallback ticks are an hour away: a query asked on one server reaches the worker parked
 * on the other only through the cross-server wake-up (or, were it lost, the worker's next poll after
 * its 20 s wait, later than the query's 10 s timeout: the test would fail).
 */
const NO_FALLBACK_TICK_MS = 3_600_000;

async function codeOf(promise: Promise<unknown>): Promise<DexError> {
  try {
    await promise;
  } catch (err) {
    return DexError.from(err);
  }
  throw new Error("expected the query to fail");
}

describe("queries", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ fallbackTickMs: NO_FALLBACK_TICK_MS });
    h.workflowWorker({ cart });
    h.activityWorker(activities);
    // A worker that keeps no run in memory: every query it answers is a replay of the history.
    await h.client.raw.queues.createTaskQueue({ name: "nocache", type: TaskQueueType.WORKFLOW });
    const replaying = createWorkflowWorker({
      address: h.server.address,
      taskQueue: "nocache",
      workflows: { cart },
      maxCachedRuns: 0,
      logger: quietLogger,
    });
    replaying.start();
    afterAll(() => replaying.shutdown());
    await h.client.raw.queues.createTaskQueue({ name: "idle", type: TaskQueueType.WORKFLOW });
  });
  afterAll(async () => {
    await h?.close();
  });

  for (const taskQueue of ["default", "nocache"]) {
    it(`answers from the run's state without writing history (${taskQueue === "default" ? "cached run" : "replayed"})`, async () => {
      const handle = await h.client.start(cart, { instanceId: `state-${taskQueue}`, input: {}, taskQueue });
      await handle.sendEvent("e0", { item: "apple" });
      await handle.sendEvent("e1", { item: "pear" });
      // The state as of the last completed workflow task: wait until both events were processed.
      await waitFor(async () => (await handle.query<number>("count")) === 2);
      const before = (await handle.history()).length;
      expect(await handle.query("items")).toEqual(["apple", "pear"]);
      expect(await handle.query("count", { plus: 10 })).toBe(12);
      expect((await handle.history()).length).toBe(before);
      await handle.sendEvent("e2", { done: true });
      expect(await handle.result()).toEqual(["apple", "pear"]);
    });
  }

  it("answers the built-in pending query: the activity and the event the workflow waits for", async () => {
    const handle = await h.client.start(cart, { instanceId: "pending-1", input: { slow: true } });
    const pending = await waitFor(async () => {
      const view = await handle.query<{ activities: Array<{ seq: number; name: string }> }>("__dex_pending");
      return view.activities.length === 1 ? view : undefined;
    });
    expect(pending).toEqual({ activities: [{ seq: 1, name: "slowStep" }], timers: [], eventWaits: [], children: [], conditions: 0 });
    gate.resolve("banana");
    const waiting = await waitFor(async () => {
      const view = await handle.query<{ eventWaits: Array<{ eventName: string }> }>("__dex_pending");
      return view.eventWaits.length === 1 ? view : undefined;
    });
    expect(waiting.eventWaits).toEqual([{ seq: 2, eventName: "e1" }]);
    await handle.sendEvent("e1", { done: true });
    expect(await handle.result()).toEqual(["banana"]);
  });

  it("answers an ended run from its final history", async () => {
    const handle = await h.client.start(cart, { instanceId: "ended-1", input: {} });
    await handle.sendEvent("e0", { item: "fig" });
    await handle.sendEvent("e1", { done: true });
    expect(await handle.result()).toEqual(["fig"]);
    expect(await handle.query("items")).toEqual(["fig"]);
    expect(await handle.query("__dex_pending")).toEqual({ activities: [], timers: [], eventWaits: [], children: [], conditions: 0 });
  });

  it("says which handlers exist, passes on the handler's error, and refuses commands inside a handler", async () => {
    const handle = await h.client.start(cart, { instanceId: "errors-1", input: {} });
    await waitFor(async () => (await handle.query<number>("count")) === 0);
    const unknown = await codeOf(handle.query("nope"));
    expect(unknown.code).toBe("INVALID_ARGUMENT");
    expect(unknown.message).toContain('no query handler "nope"; it has: items, count, boom, sneaky, __dex_pending');
    const thrown = await codeOf(handle.query("boom"));
    expect(thrown.code).toBe("INVALID_ARGUMENT");
    expect(thrown.message).toContain("kaboom");
    const sneaky = await codeOf(handle.query("sneaky"));
    expect(sneaky.code).toBe("INVALID_ARGUMENT");
    expect(sneaky.message).toContain("ctx.sleep cannot be used inside a query handler");
    // The refused sleep left the cached run as it was: it goes on and ends normally.
    await handle.sendEvent("e0", { item: "kiwi" });
    await handle.sendEvent("e1", { done: true });
    expect(await handle.result()).toEqual(["kiwi"]);
    expect((await handle.history()).some((e) => e.attributes.case === "timerStarted")).toBe(false);
  });

  it("answers FAILED_PRECONDITION when no worker polls the run's queue", async () => {
    const handle = await h.client.start(cart, { instanceId: "idle-1", input: {}, taskQueue: "idle" });
    const error = await codeOf(handle.query("items", undefined, { timeout: "1s" }));
    expect(error.code).toBe("FAILED_PRECONDITION");
    expect(error.message).toContain('start a workflow worker for task queue "idle"');
  });

  it("answers a query asked on another server than the one the worker polls", async () => {
    const other: DexServer = await startServer({ databaseUrl: h.db.url, port: 0, logger: quietLogger, fallbackTickMs: NO_FALLBACK_TICK_MS });
    const otherClient = createClient({ address: other.address });
    try {
      const handle = await h.client.start(cart, { instanceId: "two-servers-1", input: {} });
      await handle.sendEvent("e0", { item: "plum" });
      const viaOther = otherClient.getHandle({ runId: handle.runId! });
      expect(await waitFor(async () => ((await viaOther.query<string[]>("items")).length === 1 ? viaOther.query("items") : undefined))).toEqual(["plum"]);
      await handle.sendEvent("e1", { done: true });
      await handle.result();
    } finally {
      otherClient.close();
      await other.close();
    }
  });
});

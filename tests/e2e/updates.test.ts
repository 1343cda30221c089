/**
 * Updates (issue 14, done-when 3; decision 0024): a validator's rejection writes nothing to history
 * and reaches the caller as a typed error; an accepted update is recorded, its handler runs an
 * activity and the caller gets its answer; one update id runs the handler once; a worker process
 * killed between acceptance and completion loses nothing; unknown names and ended runs are refused.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError, WorkflowUpdateRejectedError, type WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { TaskQueueType, type HistoryEvent } from "@dex/proto";
import { deferred, startHarness, type Harness } from "../support/harness.js";
import { startProcess, type Started } from "../support/spawned.js";
import { cartWorkflows } from "./fixtures/update-cart.mjs";

const workerProcess = fileURLToPath(new URL("./fixtures/update-worker.mjs", import.meta.url));

/** How many times each sku's price was asked: the handler runs once per accepted update. */
const priced = new Map<string, number>();
const activities = {
  async price(sku: string) {
    priced.set(sku, (priced.get(sku) ?? 0) + 1);
    return sku.length * 10;
  },
};

async function quick(_ctx: WorkflowContext) {
  return "done";
}

function kinds(history: HistoryEvent[]): string[] {
  return history.map((e) => e.attributes.case ?? "");
}

function updateEvents(history: HistoryEvent[], updateId: string) {
  return history.filter(
    (e) =>
      (e.attributes.case === "updateAccepted" || e.attributes.case === "updateCompleted") && e.attributes.value.updateId === updateId,
  );
}

describe("updates", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  let killed: Started | undefined;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ ...cartWorkflows(), quick });
    h.activityWorker(activities);
  });
  afterAll(async () => {
    killed?.child.kill("SIGKILL");
    await h?.close();
  });

  it("rejects an update its validator refuses, writing nothing to history, and answers an accepted one", async () => {
    const handle = await h.client.start("cart", { instanceId: "upd-validate" });
    const rejected = await handle.update("addItem", { quantity: 1 }, { updateId: "bad-1" }).catch((e: unknown) => e);
    expect(rejected).toBeInstanceOf(WorkflowUpdateRejectedError);
    expect((rejected as Error).message).toContain("item.sku is required");
    expect((rejected as WorkflowUpdateRejectedError).cause.message).toBe("item.sku is required");
    expect(kinds(await handle.history())).not.toContain("updateAccepted");

    // The same rejected id again: the rejection stands, the validator is not asked again.
    await expect(handle.update("addItem", { sku: "now-valid" }, { updateId: "bad-1" })).rejects.toThrow(/item\.sku is required/);

    expect(await handle.update("addItem", { sku: "apple" }, { updateId: "add-1" })).toEqual({ count: 1, price: 50 });
    const history = await handle.history();
    expect(updateEvents(history, "add-1").map((e) => e.attributes.case)).toEqual(["updateAccepted", "updateCompleted"]);
    const accepted = kinds(history).indexOf("updateAccepted");
    expect(kinds(history).indexOf("activityScheduled")).toBeGreaterThan(accepted);
    expect(kinds(history)).not.toContain("bad-1");
    expect(updateEvents(history, "bad-1")).toEqual([]);

    expect(await handle.update("checkout", undefined)).toBe(1);
    expect(await handle.result()).toEqual([{ sku: "apple", price: 50 }]);
  });

  it("runs the handler once for one update id, and both callers get its answer", async () => {
    const handle = await h.client.start("cart", { instanceId: "upd-dedup" });
    const [first, second] = await Promise.all([
      handle.update("addItem", { sku: "pear-once" }, { updateId: "same" }),
      handle.update("addItem", { sku: "pear-once" }, { updateId: "same" }),
    ]);
    expect(first).toEqual({ count: 1, price: 90 });
    expect(second).toEqual(first);
    // Later, after it completed: answered from history.
    expect(await handle.update("addItem", { sku: "ignored" }, { updateId: "same" })).toEqual(first);
    expect(priced.get("pear-once")).toBe(1);
    expect(updateEvents(await handle.history(), "same")).toHaveLength(2);
    await handle.update("checkout", undefined);
    expect(await handle.result()).toEqual([{ sku: "pear-once", price: 90 }]);
  });

  it("rejects an unknown update name, listing the handlers the workflow has", async () => {
    const handle = await h.client.start("cart", { instanceId: "upd-unknown" });
    const err = (await handle.update("removeItem", { sku: "x" }).catch((e: unknown) => e)) as WorkflowUpdateRejectedError;
    expect(err).toBeInstanceOf(WorkflowUpdateRejectedError);
    expect(err.type).toBe("UpdateHandlerNotFound");
    expect(err.message).toContain('no update handler named "removeItem"; the workflow has: addItem, checkout');
    expect(kinds(await handle.history())).not.toContain("updateAccepted");
    await handle.update("checkout", undefined);
    await handle.result();
  });

  it("refuses an update to a run that ended before it ran", async () => {
    const handle = await h.client.start(quick, { instanceId: "upd-ended" });
    expect(await handle.result()).toBe("done");
    const err = (await handle.update("anything", 1).catch((e: unknown) => e)) as DexError;
    expect(err).toBeInstanceOf(DexError);
    expect(err.code).toBe("FAILED_PRECONDITION");
    expect(err.message).toMatch(/has already ended \(COMPLETED\); it cannot receive updates/);
  });

  it("does not lose an accepted update when its worker process is killed before the handler finished", async () => {
    const queue = "upd-kill";
    await h.client.raw.queues.createTaskQueue({ name: queue, type: TaskQueueType.WORKFLOW });
    await h.client.raw.queues.createTaskQueue({ name: queue, type: TaskQueueType.ACTIVITY });
    // The activity waits until the worker process is dead, so the handler cannot finish before.
    const gate = deferred();
    let calls = 0;
    h.activityWorker(
      {
        async price(sku: string) {
          calls++;
          await gate.promise;
          return sku.length;
        },
      },
      { taskQueue: queue },
    );
    killed = await startProcess([workerProcess, h.server.address, queue], /update worker polling/);
    const handle = await h.client.start("cart", { instanceId: "upd-kill", taskQueue: queue });
    const answer = handle.update("addItem", { sku: "survivor" }, { updateId: "kept" });
    answer.catch(() => {});
    await waitFor(async () => kinds(await handle.history()).includes("activityScheduled") && calls === 1, {
      message: "the worker process to accept the update and its handler to call the activity",
    });
    const child = killed.child;
    child.kill("SIGKILL");
    await waitFor(() => child.exitCode !== null || child.signalCode !== null, { message: "the worker process to exit" });

    gate.resolve();
    // Another worker replays the run: the handler runs again from history and completes the update.
    h.workflowWorker(cartWorkflows(), { taskQueue: queue });
    expect(await answer).toEqual({ count: 1, price: 8 });
    const history = await handle.history();
    expect(updateEvents(history, "kept").map((e) => e.attributes.case)).toEqual(["updateAccepted", "updateCompleted"]);
    expect(kinds(history).filter((k) => k === "activityScheduled")).toHaveLength(1);
    expect(calls).toBe(1);
    await handle.update("checkout", undefined);
    expect(await handle.result()).toEqual([{ sku: "survivor", price: 8 }]);
  });
});

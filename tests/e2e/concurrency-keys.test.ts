/**
 * Concurrency keys end to end: real server, SDK client and workers. The
 * activities record how many of them run at once per key; the test releases
 * them one at a time, so every claim below is a state observed, not a timing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { deferred, startHarness, type Harness } from "../support/harness.js";

/** Activities running now, by key, and the most seen at once. */
const running = new Map<string, Set<string>>();
const mostAtOnce = new Map<string, number>();
/** The most activities of the "other keys" group running at the same moment. */
let othersTogether = 0;
/** Each activity waits until the test opens its gate. */
const gates = new Map<string, { promise: Promise<void>; resolve: () => void }>();
const gate = (id: string) => gates.get(id) ?? gates.set(id, deferred<void>()).get(id)!;

const activities = {
  async hold(input: { key: string; id: string }) {
    const now = running.get(input.key) ?? running.set(input.key, new Set()).get(input.key)!;
    now.add(input.id);
    mostAtOnce.set(input.key, Math.max(mostAtOnce.get(input.key) ?? 0, now.size));
    const others = [...running].filter(([key, ids]) => key.startsWith("other-") && ids.size > 0).length;
    othersTogether = Math.max(othersTogether, others);
    try {
      await gate(input.id).promise;
    } finally {
      now.delete(input.id);
    }
    return input.id;
  },
};

async function keyed(ctx: WorkflowContext, input: { key: string; id: string }) {
  return ctx.activities<typeof activities>({ startToCloseTimeout: "1m" }).hold(input);
}

describe("concurrency keys", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ keyed });
    h.activityWorker(activities, { maxConcurrentActivities: 20 });
  });
  afterAll(async () => {
    for (const g of gates.values()) g.resolve();
    await h?.close();
  });

  it("a key with limit 1 runs its runs one at a time while runs with other keys run in parallel", async () => {
    const serial = ["s-1", "s-2", "s-3", "s-4"];
    const others = ["o-1", "o-2", "o-3"];
    const handles = new Map<string, Awaited<ReturnType<Harness["client"]["start"]>>>();
    for (const id of serial) {
      handles.set(id, await h.client.start(keyed, { instanceId: `ck-${id}`, input: { key: "serial", id }, concurrencyKey: "serial" }));
    }
    for (const [i, id] of others.entries()) {
      const key = `other-${i}`;
      handles.set(id, await h.client.start(keyed, { instanceId: `ck-${id}`, input: { key, id }, concurrencyKey: key, concurrencyLimit: 1 }));
    }

    // The three runs with keys of their own all hold their activity at the same time.
    await waitFor(() => othersTogether === others.length, { message: "the runs with other keys to run side by side" });
    const activeSerial = () => [...(running.get("serial") ?? [])];

    const done: string[] = [];
    for (let step = 0; step < serial.length; step++) {
      const [current] = await waitFor(() => (activeSerial().length > 0 ? activeSerial() : undefined), {
        message: `a run of the serial key to run (step ${step + 1})`,
      });
      expect(activeSerial()).toEqual([current]);
      // Every other open run of the key waits in CREATED without a workflow task: it cannot start.
      for (const id of serial.filter((s) => s !== current && !done.includes(s))) {
        const d = await handles.get(id)!.describe();
        expect(d.status, `${id} while ${current} holds the key`).toBe("CREATED");
        expect(d.pendingWorkflowTask).toBeUndefined();
      }
      gate(current!).resolve();
      expect(await handles.get(current!)!.result()).toBe(current);
      done.push(current!);
    }
    expect(done.sort()).toEqual(serial);
    expect(mostAtOnce.get("serial")).toBe(1);

    for (const id of others) gate(id).resolve();
    for (const id of others) expect(await handles.get(id)!.result()).toBe(id);
    for (const i of others.keys()) expect(mostAtOnce.get(`other-${i}`)).toBe(1);
    expect(othersTogether).toBe(others.length);
  });
});

/**
 * Repeatable named events end to end (issue 14, done-when 1): the shopping
 * cart of examples/shopping-cart receives 100 `add-item` events (some sent
 * twice with the same id) and a `checkout`, and its result holds each item
 * once, in order: in one run; across a continue-as-new chain (items carried
 * from run to run, ids deduplicated across the chain); and with the server
 * and the worker process killed and restarted in between.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskQueueType } from "@dex/proto";
import type { Client, WorkflowHandle } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { activities } from "../../examples/shopping-cart/activities.js";
import type { CartInput, CartResult } from "../../examples/shopping-cart/types.js";
import { cart } from "../../examples/shopping-cart/workflows.js";
import { startCrashRestart, type CrashRestart } from "../support/crash-restart.js";
import { startHarness, type Harness } from "../support/harness.js";
import { repoRoot, runDex } from "../support/server-process.js";
import { startProcess, stopProcess, type Started } from "../support/spawned.js";

const ITEMS = Array.from({ length: 100 }, (_, i) => `item-${i}`);
/** Every 9th item is sent a second time with the same id. */
const RESENT = ITEMS.filter((_, i) => i % 9 === 4);

type Cart = WorkflowHandle<CartResult>;

/** Sends items[from, to) in order, each with id `add-<i>`, resending the RESENT ones; checks each answer. */
async function addItems(handle: Cart, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) {
    const item = ITEMS[i]!;
    expect(await handle.signal("add-item", item, { id: `add-${i}` })).toMatchObject({ duplicate: false, eventId: `add-${i}` });
    if (RESENT.includes(item)) expect((await handle.signal("add-item", item, { id: `add-${i}` })).duplicate).toBe(true);
  }
}

async function chainOf(client: Client, instanceId: string): Promise<string[]> {
  return (await client.list({ instanceId })).runs.map((r) => r.runId);
}

describe("named events: a shopping cart", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ cart });
    h.activityWorker(activities);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("takes 100 add-item events, some sent twice, and a checkout: each item once, in order (some sent with the CLI)", async () => {
    const handle = await h.client.start(cart, { instanceId: "cart-one-run", input: { items: [], itemsPerRun: 1000, runsBefore: 0 } });
    await addItems(handle, 0, 50);
    // Item 50 through the CLI (and again: a duplicate), the rest through the SDK.
    const cli = (...args: string[]) => runDex(["workflow", "signal", "cart-one-run", "--address", h.server.address, ...args]);
    const sent = await cli("--name", "add-item", "--id", "add-50", "--payload", '"item-50"');
    expect(sent).toMatchObject({ code: 0, stdout: `sent event add-item (id add-50) to run ${handle.runId}\n` });
    const again = await cli("--name", "add-item", "--id", "add-50", "--payload", '"item-50"');
    expect(again.stdout).toBe(`run ${handle.runId} already received event id add-50 (name add-item); nothing changed\n`);
    await addItems(handle, 51, 100);
    // Checkout without an id: the server makes one up (no dedup).
    const checkout = await cli("--name", "checkout", "--payload", '{"card":"4242"}');
    expect(checkout.stdout).toMatch(/^sent event checkout \(id [0-9a-f-]{36}\) to run /);

    expect(await handle.result()).toEqual({ items: ITEMS, runs: 1, checkout: { card: "4242" } });
    const history = await runDex(["workflow", "history", "cart-one-run", "--address", h.server.address]);
    expect(history.stdout).toMatch(/event received +add-item \(id add-7\) "item-7"/);
    const describe = await runDex(["workflow", "describe", "cart-one-run", "--address", h.server.address]);
    expect(describe.stdout).toMatch(/received events:\n.*EVENT.*\n.*add-item +100 +0\n.*checkout +1 +0/);
    const misuse = await cli("--payload", "1");
    expect(misuse).toMatchObject({ code: 1, stdout: "" });
    expect(misuse.stderr.trim()).toBe("dex: give --name <name> (what the workflow waits for), optionally with --id <event-id>");
  });

  it("starts a cart with its first item (signal-with-start by name), and the older id-only forms still work", async () => {
    const { handle, started, eventId } = await h.client.sendEventWithStart(cart, {
      instanceId: "cart-sws",
      input: { items: [], itemsPerRun: 1000, runsBefore: 0 },
      eventName: "add-item",
      payload: "first",
    });
    expect(started).toBe(true);
    expect(eventId).toMatch(/^[0-9a-f-]{36}$/);
    // An id alone is the name too (the form before names): this is an event named "add-item".
    expect((await handle.sendEvent("add-item", "second")).eventId).toBe("add-item");
    const cli = await runDex(["workflow", "signal", "cart-sws", "--address", h.server.address, "--event", "checkout", "--payload", "true"]);
    expect(cli).toMatchObject({ code: 0, stdout: `sent event checkout (id checkout) to run ${handle.runId}\n` });
    expect(await handle.result()).toEqual({ items: ["first", "second"], runs: 1, checkout: true });
  });

  it("the same across a continue-as-new chain: unconsumed items carried over, a resend to a later run a duplicate", async () => {
    // No worker polls this queue yet: all 100 items reach the first run before it runs, so each run
    // takes 7 and carries the rest to the next (carried_events), 15 runs in all.
    await h.client.raw.queues.createTaskQueue({ name: "cart-later", type: TaskQueueType.WORKFLOW });
    await h.client.raw.queues.createTaskQueue({ name: "cart-later", type: TaskQueueType.ACTIVITY });
    const instanceId = "cart-chain";
    const input: CartInput = { items: [], itemsPerRun: 7, runsBefore: 0 };
    const first = await h.client.start(cart, { instanceId, input, taskQueue: "cart-later" });
    const byInstance = h.client.getHandle<CartResult>({ instanceId });
    await addItems(byInstance, 0, 100);
    h.workflowWorker({ cart }, { taskQueue: "cart-later" });
    h.activityWorker(activities, { taskQueue: "cart-later" });

    // Once the chain has moved on, a client retry of early sends by instance id adds nothing.
    await waitFor(async () => (await chainOf(h.client, instanceId)).length >= 3, { message: "the cart to continue as new twice" });
    for (let i = 0; i < 10; i++) {
      const retry = await byInstance.signal("add-item", ITEMS[i], { id: `add-${i}` });
      expect(retry.duplicate).toBe(true);
      expect(retry.runId).not.toBe(first.runId);
    }
    // A checkout that arrives early makes the run take every buffered item before it ends: wait for
    // the last run (100 = 14 * 7 + 2) so the chain's length is known.
    await waitFor(async () => (await chainOf(h.client, instanceId)).length === 15, { message: "the cart's 15th run" });
    await byInstance.signal("checkout", "paid");

    expect(await first.result()).toEqual({ items: ITEMS, runs: 15, checkout: "paid" });
    const runs = await chainOf(h.client, instanceId);
    expect(runs).toHaveLength(15);
    // A carried item is in the history of every run it passed through: more than 100 in all.
    let received = 0;
    for (const runId of runs) {
      const history = await h.client.getHandle({ runId }).history();
      received += history.filter((e) => e.attributes.case === "externalEventReceived" && e.attributes.value.eventName === "add-item").length;
    }
    expect(received).toBeGreaterThan(100);
  });
});

describe("named events: a shopping cart across server and worker crashes", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  // No in-process workers: the cart's worker is a process of its own, SIGKILLed too.
  let env: CrashRestart | undefined;
  let worker: Started | undefined;

  const startWorker = async () => {
    worker = await startProcess([`${repoRoot}examples/dist/shopping-cart/worker.js`], /polling/, { env: { DEX_ADDRESS: env!.address } });
  };

  beforeAll(async () => {
    env = await startCrashRestart();
  });
  afterAll(async () => {
    await stopProcess(worker);
    await env?.close();
  });

  it("keeps every item once, in order, when the worker process and then the server are SIGKILLed between sends", async () => {
    const client = env!.client;
    await startWorker();
    const instanceId = "cart-crashes";
    const first = await client.start(cart, { instanceId, input: { items: [], itemsPerRun: 10, runsBefore: 0 } });
    const byInstance = client.getHandle<CartResult>({ instanceId });

    await addItems(byInstance, 0, 40);
    await waitFor(async () => (await chainOf(client, instanceId)).length >= 3, { message: "the cart to continue as new twice" });
    worker!.child.kill("SIGKILL");
    await worker!.exited;
    // Sent while no worker runs: they wait in the open run's inbox.
    await addItems(byInstance, 40, 70);
    await startWorker();
    await waitFor(async () => (await chainOf(client, instanceId)).length >= 6, { message: "the cart to continue as new after the worker restart" });

    await env!.crashOnce();
    await env!.restartAfterCrash();
    await addItems(byInstance, 70, 100);
    for (let i = 0; i < 5; i++) expect((await byInstance.signal("add-item", ITEMS[i], { id: `add-${i}` })).duplicate).toBe(true);
    await byInstance.signal("checkout", { total: 100 });

    const result = await first.result();
    expect(result.items).toEqual(ITEMS);
    expect(result.checkout).toEqual({ total: 100 });
    expect(result.runs).toBeGreaterThanOrEqual(6);
    expect(await chainOf(client, instanceId)).toHaveLength(result.runs);
  });
});

/**
 * The order fulfilment example end to end through every path: shipped,
 * approved after a signal, rejected, payment declined, shipping failed.
 * With DEX_RECORD_HISTORIES=1 it (re)writes the histories that
 * examples/test/replay.test.ts replays against the current workflow code.
 */
import { writeFile } from "node:fs/promises";
import { toJson } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HistoryEventSchema } from "@dex/proto";
import { WorkflowFailedError, type WorkflowHandle } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { activities } from "../../examples/order-fulfilment/activities.js";
import type { Order, OrderResult } from "../../examples/order-fulfilment/types.js";
import { orderFulfilment, workflows } from "../../examples/order-fulfilment/workflows.js";
import { startHarness, type Harness } from "../support/harness.js";
import { repoRoot } from "../support/server-process.js";

const record = process.env.DEX_RECORD_HISTORIES === "1";

function order(id: string, overrides: Partial<Order> = {}): Order {
  return {
    orderId: id,
    customerEmail: "ada@example.com",
    card: "4242424242424242",
    address: "1 Analytical Engine Way",
    lines: [{ sku: "mug", quantity: 2, unitPriceCents: 899 }],
    pickupDelay: "200ms",
    ...overrides,
  };
}

async function saveHistory(name: string, handle: WorkflowHandle<unknown>): Promise<void> {
  if (!record) return;
  const events = (await handle.history()).map((event) => toJson(HistoryEventSchema, event));
  await writeFile(`${repoRoot}examples/order-fulfilment/histories/${name}.json`, `${JSON.stringify({ runId: handle.runId, events }, null, 2)}\n`);
}

describe("the order fulfilment example", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker(workflows);
    h.activityWorker(activities);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("ships an order, through the shipment child and its timer", async () => {
    const handle = await h.client.start(orderFulfilment, { instanceId: "ex-shipped", input: order("ex-1") });
    const result: OrderResult = await handle.result();
    expect(result).toMatchObject({ status: "shipped", trackingNumber: "TRK-EX-1", chargeId: "ch-ex-1", totalCents: 1798 });
    const child = await h.client.getHandle({ instanceId: "shipment-ex-1" }).describe();
    expect(child).toMatchObject({ status: "COMPLETED", parentRunId: handle.runId });
    await saveHistory("shipped", handle);
    await saveHistory("shipment", h.client.getHandle({ instanceId: "shipment-ex-1" }));
  });

  it("waits for approval of a large order and ships it once approved", async () => {
    const big = order("ex-2", { lines: [{ sku: "teapot", quantity: 8, unitPriceCents: 6500 }] });
    const handle = await h.client.start(orderFulfilment, { instanceId: "ex-approved", input: big });
    const waiting = await waitFor(async () => {
      const d = await handle.describe();
      return d.pendingEventWaits.some((w) => w.eventId === "approval") ? d : undefined;
    }, { message: "the order to wait for approval" });
    expect(waiting.customStatus).toBe("waiting for manager approval");
    await handle.sendEvent("approval", { approved: true, by: "Margaret" });
    expect(await handle.result()).toMatchObject({ status: "shipped", approvedBy: "Margaret" });
    await saveHistory("approved", handle);
  });

  it("rejects a large order when approval times out, releasing the stock", async () => {
    const big = order("ex-3", { lines: [{ sku: "mug", quantity: 40, unitPriceCents: 1500 }], approvalTimeout: "300ms" });
    const handle = await h.client.start(orderFulfilment, { instanceId: "ex-timeout", input: big });
    expect(await handle.result()).toMatchObject({ status: "rejected", compensations: ["stock released"] });
    await saveHistory("approval-timed-out", handle);
  });

  it("undoes the reservation when a waiting order is cancelled, and ends CANCELLED", async () => {
    const big = order("ex-6", { lines: [{ sku: "kettle", quantity: 20, unitPriceCents: 3999 }] });
    const handle = await h.client.start(orderFulfilment, { instanceId: "ex-cancelled", input: big });
    await waitFor(async () => ((await handle.describe()).pendingEventWaits.length > 0 ? true : undefined), {
      message: "the order to wait for approval",
    });
    await handle.cancel("customer changed their mind");
    const error = await handle.result().then(() => undefined, (err: unknown) => err);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect((error as WorkflowFailedError).status).toBe("CANCELLED");
    const events = await handle.history();
    const kinds = events.map((e) => e.attributes.case);
    // The compensation ran after the cancellation request, then the run ended cancelled.
    const released = events.findIndex((e) => e.attributes.case === "activityScheduled" && e.attributes.value.activityName === "releaseStock");
    expect(released).toBeGreaterThan(kinds.indexOf("cancelRequested"));
    expect(kinds).toContain("activityCompleted");
    expect(kinds.at(-1)).toBe("runCancelled");
    await saveHistory("cancelled", handle);
    // The 20 kettles are back: a second order for them can be reserved.
    const again = await h.client.start(orderFulfilment, { instanceId: "ex-cancelled-again", input: order("ex-7", { lines: [{ sku: "kettle", quantity: 20, unitPriceCents: 100 }] }) });
    expect(await again.result()).toMatchObject({ status: "shipped" });
  });

  it("releases the stock when the card is declined", async () => {
    const handle = await h.client.start(orderFulfilment, { instanceId: "ex-declined", input: order("ex-4", { card: "4000000000000002" }) });
    expect(await handle.result()).toMatchObject({ status: "payment-declined", compensations: ["stock released"], reason: "card declined by the issuer" });
    await saveHistory("payment-declined", handle);
  });

  it("refunds and releases when the shipment child fails", async () => {
    const handle = await h.client.start(orderFulfilment, { instanceId: "ex-undeliverable", input: order("ex-5", { address: "nowhere" }) });
    expect(await handle.result()).toMatchObject({ status: "shipping-failed", compensations: ["payment refunded", "stock released"] });
    await saveHistory("shipping-failed", handle);
  });
});

/**
 * Version 2, step 1 of changing a deployed workflow: a fraud check goes in
 * before the pickup timer, behind `ctx.patched`. Runs that version 1 started
 * and that already passed this point replay with `patched` false and keep the
 * old path; every other run (new ones, and old ones that reach the call after
 * this deploy) takes the new path, and history records a marker saying so.
 */
import type { WorkflowContext } from "@dex/sdk";
import type { activities } from "./activities.js";
import type { OrderInput, OrderResult } from "./types.js";

export const FRAUD_CHECK_PATCH = "fraud-check";

export async function fulfilOrder(ctx: WorkflowContext, order: OrderInput): Promise<OrderResult> {
  const steps = ctx.activities<typeof activities>({ startToCloseTimeout: "30s" });
  await steps.reserveStock({ orderId: order.orderId });
  const fraudChecked = ctx.patched(FRAUD_CHECK_PATCH);
  if (fraudChecked) await steps.checkFraud({ orderId: order.orderId });
  await ctx.sleep(order.pickupDelay ?? "1h");
  const trackingNumber = await steps.shipOrder({ orderId: order.orderId });
  return { orderId: order.orderId, status: "shipped", fraudChecked, trackingNumber };
}

export const workflows = { fulfilOrder };

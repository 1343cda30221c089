/**
 * Version 1, as first deployed: reserve the stock, wait for the courier's
 * pickup on a durable timer, ship.
 */
import type { WorkflowContext } from "@dex/sdk";
import type { activities } from "./activities.js";
import type { OrderInput, OrderResult } from "./types.js";

export async function fulfilOrder(ctx: WorkflowContext, order: OrderInput): Promise<OrderResult> {
  const steps = ctx.activities<typeof activities>({ startToCloseTimeout: "30s" });
  await steps.reserveStock({ orderId: order.orderId });
  await ctx.sleep(order.pickupDelay ?? "1h");
  const trackingNumber = await steps.shipOrder({ orderId: order.orderId });
  return { orderId: order.orderId, status: "shipped", fraudChecked: false, trackingNumber };
}

export const workflows = { fulfilOrder };

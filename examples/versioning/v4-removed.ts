/**
 * Version 4, step 3: the call is gone. Histories that hold the marker still
 * replay (the replay check skips patch markers the code no longer produces),
 * so no run has to end first; what is given up is a rollback to version 2,
 * which would take the old path on the runs this version starts (no marker).
 */
import type { WorkflowContext } from "@dex/sdk";
import type { activities } from "./activities.js";
import type { OrderInput, OrderResult } from "./types.js";

export async function fulfilOrder(ctx: WorkflowContext, order: OrderInput): Promise<OrderResult> {
  const steps = ctx.activities<typeof activities>({ startToCloseTimeout: "30s" });
  await steps.reserveStock({ orderId: order.orderId });
  await steps.checkFraud({ orderId: order.orderId });
  await ctx.sleep(order.pickupDelay ?? "1h");
  const trackingNumber = await steps.shipOrder({ orderId: order.orderId });
  return { orderId: order.orderId, status: "shipped", fraudChecked: true, trackingNumber };
}

export const workflows = { fulfilOrder };

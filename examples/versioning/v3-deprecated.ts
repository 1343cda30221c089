/**
 * Version 3, step 2: deployed once no run on the old path is open (`dex
 * workflow list --workflow fulfilOrder --status RUNNING` shows none started
 * before version 2). Only the new path is left; `deprecatePatch` keeps
 * recording the marker, so a rollback to version 2 still replays the runs
 * this version starts, and it replays histories with or without the marker.
 */
import type { WorkflowContext } from "@dex/sdk";
import type { activities } from "./activities.js";
import type { OrderInput, OrderResult } from "./types.js";

export async function fulfilOrder(ctx: WorkflowContext, order: OrderInput): Promise<OrderResult> {
  const steps = ctx.activities<typeof activities>({ startToCloseTimeout: "30s" });
  await steps.reserveStock({ orderId: order.orderId });
  ctx.deprecatePatch("fraud-check");
  await steps.checkFraud({ orderId: order.orderId });
  await ctx.sleep(order.pickupDelay ?? "1h");
  const trackingNumber = await steps.shipOrder({ orderId: order.orderId });
  return { orderId: order.orderId, status: "shipped", fraudChecked: true, trackingNumber };
}

export const workflows = { fulfilOrder };

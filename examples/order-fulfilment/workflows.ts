/**
 * The order fulfilment workflow: reserve stock, charge the card, ship; undo
 * what was done when a later step fails (a saga). Plain async code: dex
 * records each activity's result, so after a crash the workflow resumes where
 * it was without charging twice.
 */
import { ActivityFailure, type WorkflowContext } from "@dex/sdk";
import type { activities } from "./activities.js";
import type { Order, OrderResult } from "./types.js";

export async function orderFulfilment(ctx: WorkflowContext, order: Order): Promise<OrderResult> {
  const steps = ctx.activities<typeof activities>({
    startToCloseTimeout: "30s",
    retry: { initialInterval: "200ms", maximumInterval: "2s", maximumAttempts: 5 },
  });
  const totalCents = order.lines.reduce((sum, line) => sum + line.quantity * line.unitPriceCents, 0);
  const compensations: string[] = [];

  const { reservationId } = await steps.reserveStock({ orderId: order.orderId, lines: order.lines });
  ctx.log.info("stock reserved", { reservationId });

  let chargeId: string;
  try {
    ({ chargeId } = await steps.chargePayment({ orderId: order.orderId, card: order.card, amountCents: totalCents }));
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    await steps.releaseStock({ reservationId });
    compensations.push("stock released");
    return { orderId: order.orderId, status: "payment-declined", reservationId, totalCents, compensations, reason: err.cause?.message ?? err.message };
  }

  try {
    const { trackingNumber } = await steps.shipOrder({ orderId: order.orderId, address: order.address });
    return { orderId: order.orderId, status: "shipped", reservationId, chargeId, trackingNumber, totalCents, compensations };
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    // Undo in reverse order; both run in parallel since they are independent.
    await Promise.all([steps.refundPayment({ chargeId }), steps.releaseStock({ reservationId })]);
    compensations.push("payment refunded", "stock released");
    return { orderId: order.orderId, status: "shipping-failed", reservationId, chargeId, totalCents, compensations, reason: err.cause?.message ?? err.message };
  }
}

export const workflows = { orderFulfilment };

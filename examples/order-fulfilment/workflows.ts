/**
 * The order fulfilment workflows.
 *
 * `orderFulfilment` is a saga: reserve stock; for a large order, wait (up to a
 * timeout) for a manager's approval sent as an external event; charge the
 * card; ship through the `shipment` child workflow; undo what was done when a
 * later step fails or the order is cancelled. `shipment` books a courier,
 * waits on a durable timer for the pickup, and confirms it. Plain async code: dex records each step, so
 * after a crash the workflow resumes where it was without charging twice.
 */
import { ActivityFailure, CancelledFailure, ChildWorkflowFailure, EventWaitTimeoutError, type WorkflowContext } from "@dex/sdk";
import type { activities } from "./activities.js";
import type { Approval, Order, OrderResult, ShipmentRequest } from "./types.js";

/** Orders of this total or more wait for a manager's approval. */
export const APPROVAL_THRESHOLD_CENTS = 50_000;

const stepOptions = {
  startToCloseTimeout: "30s",
  retry: { initialInterval: "200ms", maximumInterval: "2s", maximumAttempts: 5 },
} as const;

export async function orderFulfilment(ctx: WorkflowContext, order: Order): Promise<OrderResult> {
  const steps = ctx.activities<typeof activities>(stepOptions);
  const totalCents = order.lines.reduce((sum, line) => sum + line.quantity * line.unitPriceCents, 0);
  const result = (fields: Partial<OrderResult> & Pick<OrderResult, "status">): OrderResult => ({
    orderId: order.orderId,
    totalCents,
    compensations: [],
    ...fields,
  });

  ctx.setStatus("reserving stock");
  const { reservationId } = await steps.reserveStock({ orderId: order.orderId, lines: order.lines });

  // What has been done that a cancellation must undo.
  let charged: string | undefined;
  const fulfil = async (): Promise<OrderResult> => {
    let approvedBy: string | undefined;
    if (totalCents >= APPROVAL_THRESHOLD_CENTS) {
      ctx.setStatus("waiting for manager approval");
      const decision = await waitForApproval(ctx, order.approvalTimeout ?? "1h");
      if (!decision.approved) {
        await steps.releaseStock({ reservationId });
        return result({ status: "rejected", reservationId, compensations: ["stock released"], reason: `not approved by ${decision.by}` });
      }
      approvedBy = decision.by;
    }

    ctx.setStatus("charging the card");
    let chargeId: string;
    try {
      ({ chargeId } = await steps.chargePayment({ orderId: order.orderId, card: order.card, amountCents: totalCents }));
      charged = chargeId;
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      await steps.releaseStock({ reservationId });
      return result({ status: "payment-declined", reservationId, compensations: ["stock released"], reason: err.cause?.message ?? err.message });
    }

    ctx.setStatus("shipping");
    try {
      const request: ShipmentRequest = { orderId: order.orderId, address: order.address, ...(order.pickupDelay ? { pickupDelay: order.pickupDelay } : {}) };
      const { trackingNumber } = await ctx.child(shipment, request, { instanceId: `shipment-${order.orderId}` });
      await steps.notifyCustomer({ email: order.customerEmail, message: `order ${order.orderId} shipped: ${trackingNumber}` });
      return result({ status: "shipped", reservationId, chargeId, trackingNumber, ...(approvedBy ? { approvedBy } : {}) });
    } catch (err) {
      if (!(err instanceof ChildWorkflowFailure)) throw err;
      // Independent undo steps run in parallel.
      await Promise.all([steps.refundPayment({ chargeId }), steps.releaseStock({ reservationId })]);
      return result({
        status: "shipping-failed",
        reservationId,
        chargeId,
        compensations: ["payment refunded", "stock released"],
        reason: err.cause?.message ?? err.message,
      });
    }
  };

  try {
    return await fulfil();
  } catch (err) {
    if (!(err instanceof CancelledFailure)) throw err;
    // The order was cancelled (dex workflow cancel): undo in a scope the cancellation does not reach,
    // then let the error end the run as CANCELLED. The shipment child, if started, is cancelled too.
    await ctx.nonCancellable(() =>
      Promise.all([charged ? steps.refundPayment({ chargeId: charged }) : undefined, steps.releaseStock({ reservationId })]),
    );
    throw err;
  }
}

async function waitForApproval(ctx: WorkflowContext, timeout: string): Promise<Approval> {
  try {
    return await ctx.waitForEvent<Approval>("approval", { timeout });
  } catch (err) {
    if (err instanceof EventWaitTimeoutError) return { approved: false, by: `nobody within ${timeout}` };
    throw err;
  }
}

export async function shipment(ctx: WorkflowContext, request: ShipmentRequest): Promise<{ trackingNumber: string }> {
  const steps = ctx.activities<typeof activities>(stepOptions);
  const { labelId } = await steps.bookCourier({ orderId: request.orderId, address: request.address });
  // The courier collects the parcel after the pickup window: a durable timer, not a sleep in a process.
  await ctx.sleep(request.pickupDelay ?? "1s");
  return steps.confirmPickup({ orderId: request.orderId, labelId });
}

export const workflows = { orderFulfilment, shipment };

/**
 * Activities of the order fulfilment example: the side effects. They stand in
 * for an inventory service, a payment provider and a carrier, and keep their
 * state in memory so the example runs with nothing else installed. Each is
 * idempotent by order id, because activities may run more than once.
 */
import { ApplicationFailure, type ActivityContext } from "@dex/sdk";
import type { OrderLine } from "./types.js";

const DECLINED_CARD = "4000000000000002";
const stock = new Map<string, number>([
  ["kettle", 25],
  ["teapot", 10],
  ["mug", 200],
]);
const reservations = new Map<string, OrderLine[]>();
const charges = new Map<string, { amountCents: number; refunded: boolean }>();

export async function reserveStock(input: { orderId: string; lines: OrderLine[] }): Promise<{ reservationId: string }> {
  const reservationId = `res-${input.orderId}`;
  if (reservations.has(reservationId)) return { reservationId };
  for (const line of input.lines) {
    const available = stock.get(line.sku) ?? 0;
    if (available < line.quantity) {
      throw ApplicationFailure.nonRetryable(`only ${available} of ${line.sku} in stock`, "OutOfStock");
    }
  }
  for (const line of input.lines) stock.set(line.sku, (stock.get(line.sku) ?? 0) - line.quantity);
  reservations.set(reservationId, input.lines);
  return { reservationId };
}

export async function releaseStock(input: { reservationId: string }): Promise<void> {
  const lines = reservations.get(input.reservationId);
  if (!lines) return;
  for (const line of lines) stock.set(line.sku, (stock.get(line.sku) ?? 0) + line.quantity);
  reservations.delete(input.reservationId);
}

export async function chargePayment(
  input: { orderId: string; card: string; amountCents: number },
  ctx: ActivityContext,
): Promise<{ chargeId: string }> {
  const chargeId = `ch-${input.orderId}`;
  if (charges.has(chargeId)) return { chargeId };
  if (input.card === DECLINED_CARD) {
    throw ApplicationFailure.nonRetryable("card declined by the issuer", "CardDeclined");
  }
  // A flaky provider: the first attempt of every charge times out, so the retry policy is visible.
  if (ctx.info.attempt === 1) throw ApplicationFailure.create("payment provider timed out", "ProviderTimeout");
  charges.set(chargeId, { amountCents: input.amountCents, refunded: false });
  return { chargeId };
}

export async function refundPayment(input: { chargeId: string }): Promise<void> {
  const charge = charges.get(input.chargeId);
  if (charge) charge.refunded = true;
}

export async function bookCourier(input: { orderId: string; address: string }): Promise<{ labelId: string }> {
  if (input.address.trim().toLowerCase() === "nowhere") {
    throw ApplicationFailure.nonRetryable(`carrier cannot deliver to "${input.address}"`, "Undeliverable");
  }
  return { labelId: `LBL-${input.orderId}` };
}

export async function confirmPickup(input: { orderId: string; labelId: string }): Promise<{ trackingNumber: string }> {
  return { trackingNumber: `TRK-${input.orderId.toUpperCase()}` };
}

export async function notifyCustomer(input: { email: string; message: string }): Promise<void> {
  // Stands in for an email provider: in the example the message goes to the worker's log.
  process.stdout.write(`email to ${input.email}: ${input.message}\n`);
}

export const activities = { reserveStock, releaseStock, chargePayment, refundPayment, bookCourier, confirmPickup, notifyCustomer };

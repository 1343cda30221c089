/** The order fulfilment example's data, shared by its workflow, activities and callers. */

export interface OrderLine {
  sku: string;
  quantity: number;
  unitPriceCents: number;
}

export interface Order {
  orderId: string;
  customerEmail: string;
  /** A card number; "4000000000000002" is always declined, as with payment providers' test cards. */
  card: string;
  lines: OrderLine[];
  /** Where to ship; "nowhere" makes the carrier refuse the shipment. */
  address: string;
}

export interface OrderResult {
  orderId: string;
  status: "shipped" | "payment-declined" | "shipping-failed";
  reservationId?: string;
  chargeId?: string;
  trackingNumber?: string;
  totalCents: number;
  /** What was undone, in order, when the order could not be completed. */
  compensations: string[];
  reason?: string;
}

/** The order fulfilment example's data, shared by its workflows, activities and callers. */

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
  /** How long a large order waits for a manager's approval. Default "1h". */
  approvalTimeout?: string;
  /** How long the courier takes to collect the parcel after booking. Default "1s". */
  pickupDelay?: string;
}

/** Sent by a manager as the external event "approval". */
export interface Approval {
  approved: boolean;
  by: string;
}

export interface OrderResult {
  orderId: string;
  status: "shipped" | "payment-declined" | "shipping-failed" | "rejected";
  reservationId?: string;
  chargeId?: string;
  trackingNumber?: string;
  totalCents: number;
  approvedBy?: string;
  /** What was undone, in order, when the order could not be completed. */
  compensations: string[];
  reason?: string;
}

export interface ShipmentRequest {
  orderId: string;
  address: string;
  pickupDelay?: string;
}

import type { Duration } from "@dex/sdk";

export interface OrderInput {
  orderId: string;
  /** How long the courier needs before pickup: a durable timer. Default "1h". */
  pickupDelay?: Duration;
}

export interface OrderResult {
  orderId: string;
  status: "shipped";
  /** Whether this run took the new path (the fraud check added in version 2). */
  fraudChecked: boolean;
  trackingNumber: string;
}

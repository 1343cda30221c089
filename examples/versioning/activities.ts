/**
 * The example's side effects, kept trivial: the point of the example is the
 * workflow code that calls them, in its four versions.
 */
export const activities = {
  async reserveStock(input: { orderId: string }): Promise<string> {
    return `reservation-${input.orderId}`;
  },
  /** Added in version 2 of the workflow. */
  async checkFraud(input: { orderId: string }): Promise<{ score: number }> {
    return { score: input.orderId.length % 10 };
  },
  async shipOrder(input: { orderId: string }): Promise<string> {
    return `TRK-${input.orderId.toUpperCase()}`;
  },
};

/** The cart's side effect: reserving stock for an item (in memory here). */
const reserved = new Map<string, number>();

export const activities = {
  /** Idempotent per item: a retry or a replayed call reserves nothing twice. */
  async reserveItem(item: string): Promise<string> {
    reserved.set(item, (reserved.get(item) ?? 0) + 1);
    return item;
  },
};

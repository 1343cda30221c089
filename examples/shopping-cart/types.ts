/** What the cart's workflow takes and returns. */

export interface CartInput {
  /** Items taken by the earlier runs of the chain, in the order they were added. */
  items: string[];
  /** Items one run takes before it continues as new (keeps each run's history short). */
  itemsPerRun: number;
  /** How many runs of the chain came before this one. */
  runsBefore: number;
}

export interface CartResult {
  /** Every item added, once each, in the order the server accepted them. */
  items: string[];
  /** Runs in the chain, this one included. */
  runs: number;
  /** The checkout event's payload. */
  checkout: unknown;
}

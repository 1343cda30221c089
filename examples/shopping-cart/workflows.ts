/**
 * A shopping cart: repeatable named events (decision 0022). Clients send any
 * number of `add-item` events (each with its own id, so a retried send adds
 * nothing twice) and one `checkout`. The cart takes the items one by one, in
 * the order the server accepted them, reserving each with an activity; items
 * that arrive meanwhile wait in the run's buffer. Every `itemsPerRun` items it
 * continues as new: the items not taken yet go to the next run with it
 * (the SDK carries unconsumed events over), so none is lost or repeated.
 */
import type { WorkflowContext } from "@dex/sdk";
import type { activities } from "./activities.js";
import type { CartInput, CartResult } from "./types.js";

export async function cart(ctx: WorkflowContext, input: CartInput): Promise<CartResult> {
  const acts = ctx.activities<typeof activities>({ startToCloseTimeout: "30s" });
  const items = [...input.items];
  // A handler runs as its event is delivered, before the code resumes: `checkout` is set by the
  // time any check below runs in the same workflow task.
  let checkout: { payload: unknown } | undefined;
  ctx.onEvent("checkout", (payload) => {
    checkout = { payload };
  });
  const checkedOut = ctx.condition(() => checkout !== undefined);
  for (let taken = 0; ; taken++) {
    // Checkout is sent after the last item, so once it is here every item is either taken or
    // buffered: keep taking until the buffer is empty, and only then end.
    if (taken >= input.itemsPerRun && !checkout) {
      return ctx.continueAsNew<CartInput>({ items, itemsPerRun: input.itemsPerRun, runsBefore: input.runsBefore + 1 });
    }
    // A buffered item wins over a checkout that is also here: both promises are settled, and
    // Promise.race takes the first in the list (the same on every replay).
    const next = await Promise.race([ctx.waitForEvent<string>("add-item").then((item) => ({ item })), checkedOut.then(() => undefined)]);
    if (!next) return { items, runs: input.runsBefore + 1, checkout: checkout!.payload };
    items.push(await acts.reserveItem(next.item));
  }
}

export const workflows = { cart };

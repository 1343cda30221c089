// The compatible code with the greeting workflow dropped: its open runs would have no worker.
import compatible from "./compatible.mjs";

export async function approval(ctx, input) {
  return compatible.approval(ctx, input);
}

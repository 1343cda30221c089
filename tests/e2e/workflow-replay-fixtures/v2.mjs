// Version 2: a credit check inserted between the reservation and the wait. Runs that version 1
// started have recorded the wait where this code schedules the check: they cannot replay.
import { ApplicationFailure } from "@dex/sdk";

export async function approval(ctx, input) {
  const steps = ctx.activities({ startToCloseTimeout: "30s" });
  await steps.reserve(input.id);
  if (!(await steps.check(input.id))) throw ApplicationFailure.nonRetryable("credit check failed");
  return ctx.waitForEvent("approved");
}

export async function greeting(ctx) {
  return ctx.waitForEvent("hello");
}

export const workflows = { approval, greeting };

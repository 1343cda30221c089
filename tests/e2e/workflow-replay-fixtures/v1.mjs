// Version 1 of the workflows deployed in tests/e2e/workflow-replay.test.ts: reserve, then wait.
export async function approval(ctx, input) {
  await ctx.activities({ startToCloseTimeout: "30s" }).reserve(input.id);
  return ctx.waitForEvent("approved");
}

export async function greeting(ctx) {
  return ctx.waitForEvent("hello");
}

export const workflows = { approval, greeting };

// A user's own test suite (node:test, plain JavaScript) on the installed @dex/test-environment:
// an embedded Postgres, the server in-process, a mocked activity, a 30-day sleep skipped.
import assert from "node:assert/strict";
import { test } from "node:test";
import { TestEnvironment } from "@dex/test-environment";

const DAY = 86_400_000;

export async function renewSubscription(ctx, input) {
  const startedAt = ctx.now();
  await ctx.sleep("30d");
  const receipt = await ctx.activities().charge(input.customer);
  return { receipt, sleptMs: ctx.now().getTime() - startedAt.getTime() };
}

test("a workflow sleeps 30 days, then calls a mocked activity", async () => {
  const env = await TestEnvironment.create();
  try {
    await env.createWorker({ workflows: { renewSubscription }, activities: { charge: async (customer) => `receipt-${customer}` } });
    const handle = await env.client.start(renewSubscription, { instanceId: "renew-ada", input: { customer: "ada" } });
    const result = await handle.result();
    assert.equal(result.receipt, "receipt-ada");
    assert.ok(result.sleptMs >= 30 * DAY, `slept ${result.sleptMs} ms of workflow time`);
  } finally {
    await env.close();
  }
});

import { afterAll, beforeAll, expect, it } from "vitest";
import { EventWaitTimeoutError, type WorkflowContext } from "@dex/sdk";
import { TestEnvironment } from "@dex/test-environment";

const DAY = 86_400_000;

// The workflows under test (in your app, imported from your workflow module).
async function renewSubscription(ctx: WorkflowContext, input: { customer: string }) {
  const startedAt = ctx.now();
  await ctx.sleep("30d");
  const receipt = await ctx.activities<{ charge: (customer: string) => Promise<string> }>().charge(input.customer);
  return { receipt, sleptMs: ctx.now().getTime() - startedAt.getTime() };
}

async function awaitApproval(ctx: WorkflowContext) {
  try {
    await ctx.waitForEvent("approved", { timeout: "7d" });
    return "approved";
  } catch (err) {
    if (err instanceof EventWaitTimeoutError) return "timed out";
    throw err;
  }
}

let env: TestEnvironment;
const charged: string[] = [];

beforeAll(async () => {
  env = await TestEnvironment.create({ timeSkipping: true });
  await env.createWorker({
    workflows: { renewSubscription, awaitApproval },
    // A mocked activity: a plain function under the name the workflow calls.
    activities: {
      charge: async (customer: string) => {
        charged.push(customer);
        return `receipt-${customer}`;
      },
    },
  });
});

afterAll(() => env?.close());

it("renews after 30 days", async () => {
  const handle = await env.client.start(renewSubscription, { instanceId: "renew-ada", input: { customer: "ada" } });
  const result = await handle.result(); // skips the 30 days
  expect(result.receipt).toBe("receipt-ada");
  expect(charged).toEqual(["ada"]);
  expect(result.sleptMs).toBeGreaterThanOrEqual(30 * DAY);
});

it("gives up on an approval after 7 days", async () => {
  const handle = await env.client.start(awaitApproval, { instanceId: "approval-1" });
  expect(await handle.result()).toBe("timed out");
});

it("takes an approval sent in time", async () => {
  const handle = await env.client.start(awaitApproval, { instanceId: "approval-2" });
  await handle.sendEvent("approved"); // between steps the clock runs at real speed
  expect(await handle.result()).toBe("approved");
});

// A plain JavaScript app's workers: no TypeScript, no build step, only the installed @dex/sdk.
import { createActivityWorker, createWorkflowWorker } from "@dex/sdk";

const activities = {
  async shout(text) {
    return text.toUpperCase();
  },
};

export async function jsGreeting(ctx, input) {
  const { shout } = ctx.activities({ startToCloseTimeout: "30s" });
  return { greeting: await shout(`hello ${input.name}`) };
}

const address = process.env.DEX_ADDRESS;
const workflowWorker = createWorkflowWorker({ address, taskQueue: "default", workflows: { jsGreeting } });
const activityWorker = createActivityWorker({ address, taskQueue: "default", activities });
process.stdout.write("js workers polling\n");
// run() shuts down gracefully on SIGTERM/SIGINT.
await Promise.all([workflowWorker.run(), activityWorker.run()]);

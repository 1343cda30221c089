// A TypeScript app's workers, type-checked with tsc against the installed @dex/sdk types and run compiled.
import { createActivityWorker, createWorkflowWorker, type WorkflowContext } from "@dex/sdk";

interface Order {
  sku: string;
  quantity: number;
}

const activities = {
  async reserve(order: Order): Promise<{ reservationId: string }> {
    return { reservationId: `r-${order.sku}-${order.quantity}` };
  },
};

export async function tsOrder(ctx: WorkflowContext, order: Order): Promise<{ reservationId: string; quantity: number }> {
  const { reserve } = ctx.activities<typeof activities>({ taskQueue: "ts", startToCloseTimeout: "30s" });
  const { reservationId } = await reserve(order);
  return { reservationId, quantity: order.quantity };
}

const address = process.env.DEX_ADDRESS;
const workflowWorker = createWorkflowWorker({ address, taskQueue: "ts", workflows: { tsOrder } });
const activityWorker = createActivityWorker({ address, taskQueue: "ts", activities });
process.stdout.write("ts workers polling\n");
// run() shuts down gracefully on SIGTERM/SIGINT.
await Promise.all([workflowWorker.run(), activityWorker.run()]);

/**
 * For tests that run `dex server` as a child process: the default queues
 * (what `dex dev` would create) and a pair of SDK workers against it.
 */
import { TaskQueueType } from "@dex/proto";
import { createActivityWorker, createWorkflowWorker, type Activity, type Client, type Workflow } from "@dex/sdk";
import { quietLogger } from "./harness.js";

export async function createDefaultQueues(client: Client): Promise<void> {
  await client.raw.queues.createTaskQueue({ name: "default", type: TaskQueueType.WORKFLOW });
  await client.raw.queues.createTaskQueue({ name: "default", type: TaskQueueType.ACTIVITY });
}

/** Starts a workflow worker and (when given activities) an activity worker on the default queues. */
export function startWorkers(
  address: string,
  registry: { workflows: Record<string, Workflow>; activities?: Record<string, Activity> },
): { shutdown(): Promise<void> } {
  const workers = [createWorkflowWorker({ address, taskQueue: "default", workflows: registry.workflows, logger: quietLogger })];
  if (registry.activities) {
    workers.push(createActivityWorker({ address, taskQueue: "default", activities: registry.activities, logger: quietLogger }));
  }
  workers.forEach((worker) => worker.start());
  return { shutdown: async () => void (await Promise.all(workers.map((worker) => worker.shutdown()))) };
}

/** Queue administration for tests that need a paused or capped queue, through the TaskQueueService RPCs. */
import { TaskQueueType } from "@dex/proto";
import type { Client } from "@dex/sdk";

type QueueKind = "workflow" | "activity";

const protoType = (type: QueueKind) => (type === "workflow" ? TaskQueueType.WORKFLOW : TaskQueueType.ACTIVITY);

export async function createQueue(client: Client, type: QueueKind, name: string, capacity = 0): Promise<void> {
  await client.raw.queues.createTaskQueue({ name, type: protoType(type), capacity });
}

export async function pauseQueue(client: Client, type: QueueKind, name: string): Promise<void> {
  await client.raw.queues.pauseTaskQueue({ name, type: protoType(type) });
}

export async function setCapacity(client: Client, type: QueueKind, name: string, capacity: number): Promise<void> {
  await client.raw.queues.updateTaskQueue({ name, type: protoType(type), capacity });
}

/** TaskQueueService: queue administration. Capacity and pause are enforced by every claim (store/workflow-tasks.ts). */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { TaskQueueService, TaskQueueStatus, type ServiceHandlers, type TaskQueueSchema } from "@dex/proto";
import type { Engine } from "../engine/context.js";
import {
  createQueue,
  deleteQueue,
  listQueues,
  pauseQueue,
  resumeQueue,
  updateQueueCapacity,
  type QueueKey,
  type TaskQueueView,
} from "../engine/task-queues.js";
import { invalid, queueName } from "../engine/validation.js";
import { queueTypeFromProto, queueTypeToProto, ts } from "./convert.js";

/** The capacity column is an integer; a billion leased tasks is beyond any real cluster. */
const MAX_CAPACITY = 1_000_000_000;

function queueKey(req: { name: string; type: number }): QueueKey {
  const name = queueName("name", req.name);
  const type = queueTypeFromProto(req.type);
  if (type === undefined) throw invalid("type is required: TASK_QUEUE_TYPE_WORKFLOW or TASK_QUEUE_TYPE_ACTIVITY");
  if (type === null) throw invalid(`type has an unknown value ${req.type}`);
  return { type, name };
}

function capacity(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_CAPACITY) {
    throw invalid(`capacity must be an integer from 0 (unlimited) to ${MAX_CAPACITY}, got ${value}`);
  }
  return value;
}

export function taskQueueHandlers(engine: Engine): ServiceHandlers<typeof TaskQueueService> {
  return {
    async createTaskQueue(req) {
      const key = queueKey(req);
      return { queue: toProto(await createQueue(engine, { ...key, capacity: capacity(req.capacity) })) };
    },

    async listTaskQueues(req) {
      const type = queueTypeFromProto(req.type);
      if (type === null) throw invalid(`type has an unknown value ${req.type}`);
      return { queues: (await listQueues(engine, type)).map(toProto) };
    },

    async updateTaskQueue(req) {
      const key = queueKey(req);
      return { queue: toProto(await updateQueueCapacity(engine, key, capacity(req.capacity))) };
    },

    async pauseTaskQueue(req) {
      return { queue: toProto(await pauseQueue(engine, queueKey(req))) };
    },

    async resumeTaskQueue(req) {
      return { queue: toProto(await resumeQueue(engine, queueKey(req))) };
    },

    async deleteTaskQueue(req) {
      await deleteQueue(engine, queueKey(req));
      return {};
    },
  };
}

function toProto(queue: TaskQueueView): MessageInitShape<typeof TaskQueueSchema> {
  return {
    name: queue.name,
    type: queueTypeToProto(queue.type),
    capacity: queue.capacity,
    status: queue.status === "paused" ? TaskQueueStatus.PAUSED : TaskQueueStatus.ACTIVE,
    depth: BigInt(queue.depth),
    inFlight: BigInt(queue.inFlight),
    oldestPendingAge: durationFromMs(queue.oldestPendingAgeMs),
    createTime: ts(queue.createdAt),
  };
}

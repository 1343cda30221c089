/** TaskQueueService: create and list now; capacity and pause land with their enforcement. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { TaskQueueService, TaskQueueStatus, type ServiceHandlers, type TaskQueueSchema } from "@dex/proto";
import type { Engine } from "../engine/context.js";
import { createQueue, listQueues, type TaskQueueView } from "../engine/task-queues.js";
import { intInRange, invalid, queueName } from "../engine/validation.js";
import { unimplemented } from "./common.js";
import { queueTypeFromProto, queueTypeToProto, ts } from "./convert.js";

export function taskQueueHandlers(engine: Engine): ServiceHandlers<typeof TaskQueueService> {
  return {
    async createTaskQueue(req) {
      const name = queueName("name", req.name);
      const type = queueTypeFromProto(req.type);
      if (type === undefined) throw invalid("type is required: TASK_QUEUE_TYPE_WORKFLOW or TASK_QUEUE_TYPE_ACTIVITY");
      if (type === null) throw invalid(`type has an unknown value ${req.type}`);
      const capacity = intInRange("capacity", req.capacity, 0, 1_000_000_000);
      return { queue: toProto(await createQueue(engine, { type, name, capacity })) };
    },

    async listTaskQueues(req) {
      const type = queueTypeFromProto(req.type);
      if (type === null) throw invalid(`type has an unknown value ${req.type}`);
      return { queues: (await listQueues(engine, type)).map(toProto) };
    },

    updateTaskQueue: unimplemented("UpdateTaskQueue", "the version that enforces queue capacity"),
    pauseTaskQueue: unimplemented("PauseTaskQueue", "the version that enforces queue pausing"),
    resumeTaskQueue: unimplemented("ResumeTaskQueue", "the version that enforces queue pausing"),
    deleteTaskQueue: unimplemented("DeleteTaskQueue"),
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

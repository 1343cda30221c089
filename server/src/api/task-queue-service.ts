/** TaskQueueService: queue administration. Capacity and pause are enforced by every claim (store/workflow-tasks.ts). */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, type Duration, type FieldMask } from "@bufbuild/protobuf/wkt";
import { TaskQueueService, TaskQueueStatus, type ServiceHandlers, type TaskQueueSchema } from "@dex/proto";
import type { Engine } from "../engine/context.js";
import {
  createQueue,
  deleteQueue,
  listQueues,
  pauseQueue,
  resumeQueue,
  updateQueue,
  type QueueKey,
  type TaskQueueView,
} from "../engine/task-queues.js";
import { retentionSeconds } from "../engine/retention.js";
import { QueueType } from "../engine/model.js";
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

/** A queue's retention from a request: only workflow queues hold runs. */
function queueRetention(key: QueueKey, value: Duration | undefined): number | undefined {
  const seconds = retentionSeconds("retention", value);
  if (seconds !== undefined && key.type !== QueueType.WORKFLOW) {
    throw invalid(`retention applies to workflow task queues only (runs live there); "${key.name}" is an activity task queue`);
  }
  return seconds;
}

const UPDATE_PATHS = ["capacity", "retention"];

/** What UpdateTaskQueue changes: the mask's paths, or (no mask) capacity plus retention if set. */
function queueUpdate(key: QueueKey, req: { capacity: number; retention?: Duration; updateMask?: FieldMask }) {
  const paths = req.updateMask?.paths ?? [];
  for (const path of paths) {
    if (!UPDATE_PATHS.includes(path)) throw invalid(`update_mask has an unknown path "${path}": use "capacity" and/or "retention"`);
  }
  const masked = paths.length > 0;
  const retention = queueRetention(key, req.retention);
  return {
    capacity: !masked || paths.includes("capacity") ? capacity(req.capacity) : undefined,
    // Named in the mask but unset: back to the server default (NULL).
    retentionSeconds: masked && paths.includes("retention") ? (retention ?? null) : retention,
  };
}

/** `defaultRetentionSeconds`: this server's default, shown as the effective retention of queues that set none. */
export function taskQueueHandlers(engine: Engine, options: { defaultRetentionSeconds?: number } = {}): ServiceHandlers<typeof TaskQueueService> {
  const toProto = (queue: TaskQueueView) => queueToProto(queue, options.defaultRetentionSeconds ?? 0);
  return {
    async createTaskQueue(req) {
      const key = queueKey(req);
      const retention = queueRetention(key, req.retention);
      return { queue: toProto(await createQueue(engine, { ...key, capacity: capacity(req.capacity), retentionSeconds: retention })) };
    },

    async listTaskQueues(req) {
      const type = queueTypeFromProto(req.type);
      if (type === null) throw invalid(`type has an unknown value ${req.type}`);
      return { queues: (await listQueues(engine, type)).map(toProto) };
    },

    async updateTaskQueue(req) {
      const key = queueKey(req);
      return { queue: toProto(await updateQueue(engine, key, queueUpdate(key, req))) };
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

function queueToProto(queue: TaskQueueView, defaultRetentionSeconds: number): MessageInitShape<typeof TaskQueueSchema> {
  const workflow = queue.type === QueueType.WORKFLOW;
  return {
    name: queue.name,
    type: queueTypeToProto(queue.type),
    capacity: queue.capacity,
    status: queue.status === "paused" ? TaskQueueStatus.PAUSED : TaskQueueStatus.ACTIVE,
    depth: BigInt(queue.depth),
    inFlight: BigInt(queue.inFlight),
    oldestPendingAge: durationFromMs(queue.oldestPendingAgeMs),
    createTime: ts(queue.createdAt),
    retention: workflow && queue.retentionSeconds !== null ? durationFromMs(queue.retentionSeconds * 1000) : undefined,
    effectiveRetention: workflow ? durationFromMs((queue.retentionSeconds ?? defaultRetentionSeconds) * 1000) : undefined,
    lastPollTime: ts(queue.lastPolledAt),
  };
}

/** Task queue admin and the "does this queue exist" check used by starts, polls and commands. */
import { DexError } from "@dex/proto";
import { createTaskQueue, listTaskQueues, queueLoads, taskQueueExists, type TaskQueueRecord } from "../store/task-queues.js";
import type { Engine } from "./context.js";
import type { QueueType } from "./model.js";

export interface TaskQueueView extends TaskQueueRecord {
  depth: number;
  inFlight: number;
  oldestPendingAgeMs: number;
}

function cacheKey(type: QueueType, name: string): string {
  return `${type}:${name}`;
}

export async function queueExists(engine: Engine, type: QueueType, name: string): Promise<boolean> {
  if (engine.knownQueues.has(cacheKey(type, name))) return true;
  const exists = await taskQueueExists(engine.sql, type, name);
  if (exists) engine.knownQueues.add(cacheKey(type, name));
  return exists;
}

export async function requireQueue(engine: Engine, type: QueueType, name: string, field: string): Promise<void> {
  if (!(await queueExists(engine, type, name))) {
    throw new DexError(
      "NOT_FOUND",
      `${field}: ${type} task queue "${name}" does not exist; create it first (TaskQueueService.CreateTaskQueue)`,
    );
  }
}

export async function createQueue(
  engine: Engine,
  input: { type: QueueType; name: string; capacity: number },
): Promise<TaskQueueView> {
  const created = await createTaskQueue(engine.sql, input);
  if (!created) throw new DexError("ALREADY_EXISTS", `${input.type} task queue "${input.name}" already exists`);
  engine.knownQueues.add(cacheKey(input.type, input.name));
  engine.logger.info("task queue created", { type: input.type, name: input.name });
  return { ...created, depth: 0, inFlight: 0, oldestPendingAgeMs: 0 };
}

/** Creates the queues that are missing (startup: `dex dev` passes the two default queues). */
export async function ensureQueues(engine: Engine, queues: Array<{ type: QueueType; name: string }>): Promise<void> {
  for (const queue of queues) {
    if (await queueExists(engine, queue.type, queue.name)) continue;
    try {
      await createQueue(engine, { ...queue, capacity: 0 });
    } catch (err) {
      // Another server created it between the check and the create.
      if (!(err instanceof DexError && err.code === "ALREADY_EXISTS")) throw err;
    }
  }
}

export async function listQueues(engine: Engine, type: QueueType | undefined): Promise<TaskQueueView[]> {
  const [queues, loads] = await Promise.all([listTaskQueues(engine.db, type), queueLoads(engine.sql)]);
  const byKey = new Map(loads.map((load) => [cacheKey(load.type as QueueType, load.queue), load]));
  return queues.map((queue) => {
    const load = byKey.get(cacheKey(queue.type, queue.name));
    const oldest = load?.oldestAvailableAt;
    return {
      ...queue,
      depth: load?.depth ?? 0,
      inFlight: load?.inFlight ?? 0,
      oldestPendingAgeMs: oldest && load ? Math.max(0, load.now.getTime() - oldest.getTime()) : 0,
    };
  });
}

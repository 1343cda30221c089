/**
 * Task queue admin (create, capacity, pause, resume, delete, list), the "does
 * this queue exist" check used by starts, polls and commands, and the wakes
 * that capacity and pause need. Capacity and pause themselves are enforced in
 * the database, by every claim (dex.claim_limit, see store/workflow-tasks.ts).
 * Wakes follow the commit: this server's parked polls in-process, the other
 * servers' through engine/notifier.ts (store/notify.ts).
 */
import { DexError } from "@dex/proto";
import {
  createTaskQueue,
  deletedQueueIn,
  deleteTaskQueue,
  listTaskQueues,
  queueLoad,
  queueLoads,
  readTaskQueue,
  taskQueueExists,
  updateTaskQueue,
  type QueueChange,
  type QueueLoad,
  type TaskQueueRecord,
} from "../store/task-queues.js";
import type { Queryable } from "../store/db.js";
import type { Engine } from "./context.js";
import { QueueType } from "./model.js";
import { announceQueues } from "./notifier.js";

export interface TaskQueueView extends TaskQueueRecord {
  depth: number;
  inFlight: number;
  oldestPendingAgeMs: number;
}

export interface QueueKey {
  type: QueueType;
  name: string;
}

function cacheKey(type: QueueType, name: string): string {
  return `${type}:${name}`;
}

function withLoad(queue: TaskQueueRecord, load: QueueLoad | undefined): TaskQueueView {
  const oldest = load?.oldestAvailableAt;
  return {
    ...queue,
    depth: load?.depth ?? 0,
    inFlight: load?.inFlight ?? 0,
    oldestPendingAgeMs: oldest && load ? Math.max(0, load.now.getTime() - oldest.getTime()) : 0,
  };
}

/**
 * engine.knownQueues holds queues seen to exist. An entry can outlive a delete
 * on another server; that is safe because nothing trusts it for more than
 * skipping a lookup: a claim on a deleted queue raises (dex.claim_limit) and
 * the poll answers NOT_FOUND; an insert into one finds no partition (start:
 * NOT_FOUND; a completion forgets the queue and checks again). The entry is
 * dropped on delete here, by that completion, and when taskLeaseEnded finds
 * the row gone.
 */
/**
 * Whether the queue exists: the cache, else the database. Inside a
 * transaction pass it as `sql`: asking the pool from inside one holds a
 * connection while waiting for another, and a burst of such completions
 * empties the pool and stalls the server (found by the chaos suite).
 */
export async function queueExists(engine: Engine, type: QueueType, name: string, sql: Queryable = engine.sql): Promise<boolean> {
  if (engine.knownQueues.has(cacheKey(type, name))) return true;
  const exists = await taskQueueExists(sql, type, name);
  if (exists) engine.knownQueues.add(cacheKey(type, name));
  return exists;
}

export function forgetQueue(engine: Engine, type: QueueType, name: string | undefined): void {
  if (name !== undefined) {
    engine.knownQueues.delete(cacheKey(type, name));
    capacities(engine).delete(cacheKey(type, name));
    return;
  }
  // Postgres named no queue: forget every queue of the type (they are looked up again).
  for (const key of [...engine.knownQueues]) if (key.startsWith(`${type}:`)) engine.knownQueues.delete(key);
}

/** If `err` says a queue is gone (see deletedQueueIn), forgets it and returns true. */
export function forgetDeletedQueue(engine: Engine, err: unknown): boolean {
  const gone = deletedQueueIn(err);
  if (!gone) return false;
  forgetQueue(engine, gone.type, gone.name);
  return true;
}

/** NOT_FOUND for an error that says a queue was deleted under the caller; undefined for any other error. */
export function deletedQueueError(err: unknown): DexError | undefined {
  const gone = deletedQueueIn(err);
  if (!gone) return undefined;
  const what = gone.name === undefined ? `the ${gone.type} task queue` : `${gone.type} task queue "${gone.name}"`;
  return new DexError(
    "NOT_FOUND",
    `${what} does not exist (it was deleted); create it first (TaskQueueService.CreateTaskQueue)`,
    { cause: err },
  );
}

function notFound(key: QueueKey, field = "name"): DexError {
  return new DexError(
    "NOT_FOUND",
    `${field}: ${key.type} task queue "${key.name}" does not exist; create it first (TaskQueueService.CreateTaskQueue)`,
  );
}

function article(type: QueueType): string {
  return type === QueueType.ACTIVITY ? "an" : "a";
}

/**
 * The queue a worker polls must exist with the worker's type. A queue of that
 * name with the other type is the worker's mistake, not a missing queue.
 */
export async function requireQueue(engine: Engine, type: QueueType, name: string, field: string): Promise<void> {
  if (await queueExists(engine, type, name)) return;
  const other = type === QueueType.WORKFLOW ? QueueType.ACTIVITY : QueueType.WORKFLOW;
  if (await queueExists(engine, other, name)) {
    throw new DexError(
      "INVALID_ARGUMENT",
      `${field}: "${name}" is ${article(other)} ${other} task queue, and ${article(type)} ${type} worker polls only ` +
        `${type} task queues (there is no ${type} task queue "${name}"); poll it with ${article(other)} ${other} worker`,
    );
  }
  throw notFound({ type, name }, field);
}

export async function createQueue(
  engine: Engine,
  input: { type: QueueType; name: string; capacity: number; retentionSeconds?: number | null },
): Promise<TaskQueueView> {
  const created = await createTaskQueue(engine.sql, input);
  if (!created) throw new DexError("ALREADY_EXISTS", `${input.type} task queue "${input.name}" already exists`);
  engine.knownQueues.add(cacheKey(input.type, input.name));
  rememberCapacity(engine, input.type, input.name, created);
  engine.logger.info("task queue created", { type: input.type, name: input.name, capacity: input.capacity, retentionSeconds: input.retentionSeconds ?? null });
  return withLoad(created, undefined);
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
  const [queues, loads] = await Promise.all([listTaskQueues(engine.sql, type), queueLoads(engine.sql)]);
  const byKey = new Map(loads.map((load) => [cacheKey(load.type as QueueType, load.queue), load]));
  return queues.map((queue) => withLoad(queue, byKey.get(cacheKey(queue.type, queue.name))));
}

/** True when the change lets claims hand out more than before: parked polls must look again. */
function opensUp(before: TaskQueueRecord, after: TaskQueueRecord): boolean {
  if (after.status !== "active") return false;
  if (before.status !== "active") return true;
  return before.capacity !== 0 && (after.capacity === 0 || after.capacity > before.capacity);
}

/**
 * Capacity, pause and resume: the next claim of the queue, on any server,
 * reads the new value (claims read the row in their own statement). A change
 * that lets more out wakes every poll parked on the queue here and, once it
 * has committed, announces the queue to the other servers' parked polls (one
 * NOTIFY; pause and a lowering send none).
 */
async function changeQueue(engine: Engine, key: QueueKey, change: QueueChange, what: string): Promise<TaskQueueView> {
  const changed = await updateTaskQueue(engine.sql, key, change);
  if (!changed) throw notFound(key);
  const { before, after } = changed;
  rememberCapacity(engine, key.type, key.name, after);
  if (opensUp(before, after)) {
    engine.wakeups.wakeQueue(key.type, key.name, Number.POSITIVE_INFINITY);
    announceQueues(engine, key.type, [key.name]);
  }
  engine.logger.info(`task queue ${what}`, {
    type: key.type,
    name: key.name,
    capacity: after.capacity,
    status: after.status,
    previousCapacity: before.capacity,
    previousStatus: before.status,
    ...(before.retentionSeconds !== after.retentionSeconds
      ? { retentionSeconds: after.retentionSeconds, previousRetentionSeconds: before.retentionSeconds }
      : {}),
  });
  return withLoad(after, await queueLoad(engine.sql, key.type, key.name));
}

/** UpdateTaskQueue: capacity and/or retention (null: back to the server default); unset fields stay. */
export function updateQueue(
  engine: Engine,
  key: QueueKey,
  change: { capacity?: number; retentionSeconds?: number | null },
): Promise<TaskQueueView> {
  const what = change.retentionSeconds === undefined ? "capacity changed" : change.capacity === undefined ? "retention changed" : "updated";
  return changeQueue(engine, key, change, what);
}

export function pauseQueue(engine: Engine, key: QueueKey): Promise<TaskQueueView> {
  return changeQueue(engine, key, { status: "paused" }, "paused");
}

export function resumeQueue(engine: Engine, key: QueueKey): Promise<TaskQueueView> {
  return changeQueue(engine, key, { status: "active" }, "resumed");
}

/** Deletes an empty queue with its partition (see store deleteTaskQueue for the locking). */
export async function deleteQueue(engine: Engine, key: QueueKey): Promise<void> {
  const result = await deleteTaskQueue(engine.sql, key);
  switch (result.outcome) {
    case "missing":
      throw notFound(key);
    case "not_empty": {
      const holds = [
        result.tasks > 0 ? `${result.tasks} task${result.tasks === 1 ? "" : "s"} (waiting, backing off or leased)` : "",
        result.openRuns > 0
          ? `${result.openRuns} open run${result.openRuns === 1 ? "" : "s"} whose next workflow tasks go to it`
          : "",
      ].filter(Boolean);
      throw new DexError(
        "FAILED_PRECONDITION",
        `${key.type} task queue "${key.name}" is not empty: it holds ${holds.join(" and ")}; ` +
          `a queue can be deleted once no task and no open run needs it (pause it to stop handing tasks out)`,
      );
    }
    case "busy":
      throw new DexError(
        "ABORTED",
        `could not lock the ${key.type} task tables to delete "${key.name}" within a few seconds (other statements ` +
          `held them); nothing was deleted: retry`,
      );
    case "deleted":
      forgetQueue(engine, key.type, key.name);
      // Parked polls of the queue, here and on the other servers, look again and answer NOT_FOUND
      // (the claim finds no queue).
      engine.wakeups.wakeQueue(key.type, key.name, Number.POSITIVE_INFINITY);
      announceQueues(engine, key.type, [key.name]);
      engine.logger.info("task queue deleted", { type: key.type, name: key.name });
  }
}

// ---------------------------------------------------------------- freed slots

/**
 * Whether each queue is capped, as last read here. Only for choosing whether
 * a finished task should wake a poll (never for enforcing anything), so it
 * may be a few seconds stale: a queue capped on another server meanwhile is
 * covered by the fallback tick until this is re-read.
 */
interface CapacityEntry {
  capped: boolean;
  readAt: number;
}
const CAPACITY_TTL_MS = 5_000;
const capacityCaches = new WeakMap<Engine, Map<string, CapacityEntry>>();

function capacities(engine: Engine): Map<string, CapacityEntry> {
  let cache = capacityCaches.get(engine);
  if (!cache) capacityCaches.set(engine, (cache = new Map()));
  return cache;
}

function rememberCapacity(engine: Engine, type: QueueType, name: string, queue: Pick<TaskQueueRecord, "capacity" | "status">): void {
  capacities(engine).set(cacheKey(type, name), { capped: queue.capacity > 0 && queue.status === "active", readAt: Date.now() });
}

/**
 * A leased task of the queue ended (completed, failed, or handed back): on a
 * capped queue that frees a slot that polls parked at capacity are waiting
 * for, and nothing else would tell them until the fallback tick (~2 s). Wake
 * one parked here; with none parked here, one NOTIFY lets another server's
 * parked poll take it. Unlimited queues: nothing (their polls park only when
 * the queue is empty, and a wake would cost a claim that finds nothing).
 */
export function taskLeaseEnded(engine: Engine, type: QueueType, queue: string): void {
  const entry = capacities(engine).get(cacheKey(type, queue));
  if (entry && Date.now() - entry.readAt < CAPACITY_TTL_MS) {
    if (entry.capped) wakeForSlot(engine, type, queue);
    return;
  }
  void readTaskQueue(engine.sql, type, queue)
    .then((row) => {
      if (!row) return forgetQueue(engine, type, queue);
      rememberCapacity(engine, type, queue, row);
      if (row.capacity > 0 && row.status === "active") wakeForSlot(engine, type, queue);
    })
    .catch((err: unknown) => engine.logger.warn("could not read a task queue's capacity", { type, queue, err }));
}

function wakeForSlot(engine: Engine, type: QueueType, queue: string): void {
  if (engine.wakeups.parkedQueues().some((q) => q.type === type && q.queue === queue)) {
    engine.wakeups.wakeQueue(type, queue);
    return;
  }
  announceQueues(engine, type, [queue]);
}

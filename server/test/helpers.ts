/** Test support: a real server on port 0 over a fresh database, and typed gRPC clients. */
import * as grpc from "@grpc/grpc-js";
import postgres from "postgres";
import { expect, vi } from "vitest";
import {
  ClientService,
  createServiceClient,
  DexError,
  ParentClosePolicy,
  TaskQueueService,
  WorkerService,
  type ServiceClient,
} from "@dex/proto";
import { createTestDatabase, DEFAULT_WAIT_MS, waitFor, type TestDatabase } from "@dex/testing";
import { Wakeups, type Subscription } from "../src/engine/wakeups.js";
import { silentLogger, startServer, type DexServer, type ServerOptions } from "../src/index.js";

export interface Harness {
  db: TestDatabase;
  server: DexServer;
  sql: postgres.Sql;
  client: ServiceClient<typeof ClientService>;
  worker: ServiceClient<typeof WorkerService>;
  queues: ServiceClient<typeof TaskQueueService>;
  channel: grpc.Client;
  close(): Promise<void>;
}

export async function startHarness(options: Partial<ServerOptions> = {}): Promise<Harness> {
  return serveDatabase(await createTestDatabase(), options, { dropOnClose: true });
}

/**
 * A server (with clients) on an existing test database: a second server on a
 * harness's database, or a server after a restart. close() drops the database
 * only with `dropOnClose`.
 */
export async function serveDatabase(
  db: TestDatabase,
  options: Partial<ServerOptions> = {},
  { dropOnClose = false } = {},
): Promise<Harness> {
  const server = await startServer({
    databaseUrl: db.url,
    port: 0,
    logger: process.env.DEX_TEST_LOG ? undefined : silentLogger,
    ensureQueues: [
      { type: "workflow", name: "default" },
      { type: "activity", name: "default" },
    ],
    maxPollWaitMs: 2_000,
    ...options,
  });
  const channel = new grpc.Client(server.address, grpc.credentials.createInsecure());
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  return {
    db,
    server,
    sql,
    channel,
    client: createServiceClient(ClientService, channel),
    worker: createServiceClient(WorkerService, channel),
    queues: createServiceClient(TaskQueueService, channel),
    async close() {
      channel.close();
      await server.close();
      await sql.end();
      if (dropOnClose) await db.drop();
    },
  };
}

/**
 * Server options under which only a wake-up can answer a parked poll in time: no fallback tick,
 * and polls may wait 60 s (the longest a poll may ask for), longer than wokenBy's deadline.
 */
export const WAKES_ONLY: Partial<ServerOptions> = { fallbackTickMs: Number.POSITIVE_INFINITY, maxPollWaitMs: 60_000 };
/** A poll's wait that ends after wokenBy's deadline. */
export const PARK = { seconds: 60n };

/**
 * The answer of a poll parked (with PARK) on a server started with WAKES_ONLY: neither the
 * fallback tick nor the poll's own deadline can answer it before this deadline, so an answer
 * proves a wake-up reached the poll. The deadline is generous for a loaded machine: it says
 * nothing about speed (bench/ measures that), only how long a missing wake-up takes to fail.
 */
export async function wokenBy<T>(poll: Promise<T>, what: string, deadlineMs = DEFAULT_WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no wake-up reached the parked poll within ${deadlineMs} ms (no fallback tick, poll deadline later): ${what}`)),
      deadlineMs,
    );
  });
  try {
    return await Promise.race([poll, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Counts the polls that parked, per queue, in every server of this test process (they run
 * in-process): a long poll waits on its subscription's `woken` only once a check found nothing
 * (engine/long-poll.ts), so reading `woken` is the moment it parks. A test waits for the count to
 * know that a poll parked before it enqueues, instead of hoping a pause was long enough.
 */
export function watchParking(): { parked(type: "workflow" | "activity", queue: string): number; restore(): void } {
  const counts = countParking("subscribeQueue", (type: string, queue: string) => `${type}:${queue}`);
  return { parked: (type, queue) => counts.of(`${type}:${queue}`), restore: counts.restore };
}

/**
 * The same count per run: the times an UpdateRun, a result or history wait (any run waiter) parked
 * on a run's wake-ups, so a test knows the waiter is parked on that run.
 */
export function watchRunParking(): { parked(runId: string): number; restore(): void } {
  const counts = countParking("subscribeRun", (runId: string) => runId);
  return { parked: counts.of, restore: counts.restore };
}

/** Wraps one Wakeups subscribe method so each read of a subscription's `woken` counts under `keyOf(...args)`. */
function countParking<M extends "subscribeQueue" | "subscribeRun">(
  method: M,
  keyOf: (...args: Parameters<Wakeups[M]>) => string,
): { of(key: string): number; restore(): void } {
  const counts = new Map<string, number>();
  const subscribe = Wakeups.prototype[method] as (this: Wakeups, ...args: unknown[]) => Subscription;
  const spy = vi.spyOn(Wakeups.prototype, method).mockImplementation(function (this: Wakeups, ...args: unknown[]) {
    const inner = subscribe.apply(this, args);
    const key = (keyOf as (...a: unknown[]) => string)(...args);
    const watched: Subscription = {
      get woken() {
        counts.set(key, (counts.get(key) ?? 0) + 1);
        return inner.woken;
      },
      get fired() {
        return inner.fired;
      },
      // Passed through: a poll woken by name passes no wake on (engine/workflow-tasks.ts), and a
      // wrapper that dropped it turned that guard off in every test that watches parking.
      get byName() {
        return inner.byName;
      },
      cancel: () => inner.cancel(),
    };
    return watched;
  } as never);
  return { of: (key) => counts.get(key) ?? 0, restore: () => spy.mockRestore() };
}

/**
 * Sends a poll and resolves once it has parked (its claim found nothing), or has been answered
 * without parking (the caller's expectations then fail), with the answer to come. Wrapped: an
 * async function returning the answer's promise would wait for it.
 */
export async function parkPoll<T>(
  parking: ReturnType<typeof watchParking>,
  type: "workflow" | "activity",
  queue: string,
  send: () => Promise<T>,
): Promise<{ answer: Promise<T> }> {
  const before = parking.parked(type, queue);
  const answer = send();
  let settled = false;
  answer.then(
    () => (settled = true),
    () => (settled = true),
  );
  await waitFor(() => settled || parking.parked(type, queue) > before, { message: `a poll of ${type} queue ${queue} to park` });
  return { answer };
}

export function json(value: unknown) {
  return { data: new TextEncoder().encode(JSON.stringify(value)), encoding: "json/plain" };
}

export function fromJson(payload: { data: Uint8Array } | undefined): unknown {
  return payload ? JSON.parse(new TextDecoder().decode(payload.data)) : undefined;
}

/** The oneof case of each event: a readable picture of a history. */
export function kinds(events: Array<{ attributes: { case: string | undefined } }>): string[] {
  return events.map((e) => e.attributes.case ?? "?");
}

let counter = 0;
export function uniqueId(prefix: string): string {
  return `${prefix}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Starts a run and completes its first workflow task with the given commands; returns the run id. */
export async function startWith(
  h: Harness,
  commands: Parameters<Harness["worker"]["completeWorkflowTask"]>[0]["commands"],
  options: { workerId?: string; instanceId?: string; taskQueue?: string } = {},
): Promise<string> {
  const { runId } = await h.client.startWorkflow({
    workflowName: "wf",
    instanceId: options.instanceId ?? uniqueId("run"),
    taskQueue: options.taskQueue ?? "",
  });
  const task = await pollWorkflowTaskOf(h, runId, options.workerId ?? "w1", options.taskQueue ?? "default");
  await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands });
  return runId;
}

type PolledWorkflowTask = Awaited<ReturnType<Harness["worker"]["pollWorkflowTasks"]>>["tasks"][number];
type PolledActivityTask = Awaited<ReturnType<Harness["worker"]["pollActivityTasks"]>>["tasks"][number];
const workflowStash = new Map<string, PolledWorkflowTask>();
const activityStash = new Map<string, PolledActivityTask>();

/** Polls until the task of this run comes out; tasks of other runs are kept for their own callers. */
export async function pollWorkflowTaskOf(h: Harness, runId: string, workerId = "w1", taskQueue = "default") {
  for (let i = 0; i < 20; i++) {
    const stashed = workflowStash.get(runId);
    if (stashed) {
      workflowStash.delete(runId);
      return stashed;
    }
    const { tasks } = await h.worker.pollWorkflowTasks({ taskQueue, workerId, maxTasks: 10, maxWait: { seconds: 2n } });
    for (const task of tasks) workflowStash.set(task.runId, task);
  }
  throw new Error(`no workflow task for run ${runId}`);
}

export async function pollActivityOf(h: Harness, runId: string, seq: number, taskQueue = "default", workerId = "a1") {
  for (let i = 0; i < 20; i++) {
    const stashed = activityStash.get(`${runId}/${seq}`);
    if (stashed) {
      activityStash.delete(`${runId}/${seq}`);
      return stashed;
    }
    const { tasks } = await h.worker.pollActivityTasks({ taskQueue, workerId, maxTasks: 10, maxWait: { seconds: 2n } });
    for (const task of tasks) activityStash.set(`${task.runId}/${task.seq}`, task);
  }
  throw new Error(`no activity task ${seq} for run ${runId}`);
}

export function byRunId(runId: string) {
  return { target: { case: "runId" as const, value: runId } };
}

export function byInstance(instanceId: string) {
  return { target: { case: "instanceId" as const, value: instanceId } };
}

/** A run id no run has. */
export const unknownRun = byRunId("0190a1b2-0000-7000-8000-000000000000");

/** Expects `promise` to reject with a DexError; returns it. */
export async function failure(promise: Promise<unknown>): Promise<DexError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "the call should have failed").toBeInstanceOf(DexError);
  return err as DexError;
}

/** Expects `promise` to reject with a DexError of `code` (and a message matching `message`); returns it. */
export async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<DexError> {
  const err = await failure(promise);
  expect(err.code).toBe(code);
  if (message) expect(err.message).toMatch(message);
  return err;
}

export function startChild(seq: number, instanceId: string, parentClosePolicy = ParentClosePolicy.CANCEL) {
  return { command: { case: "startChildRun" as const, value: { seq, workflowName: "child", instanceId, parentClosePolicy } } };
}

export function scheduleActivity(seq: number, activityName: string, extra: Record<string, unknown> = {}) {
  return { command: { case: "scheduleActivity" as const, value: { seq, activityName, ...extra } } };
}

export function completeRun(result: unknown) {
  return { command: { case: "completeRun" as const, value: { result: json(result) } } };
}

export function completeUpdate(updateId: string, result: unknown) {
  return { command: { case: "completeUpdate" as const, value: { updateId, result: json(result) } } };
}

/** Continue-as-new naming the updates of the task the code never saw (ContinueAsNewCommand.undelivered_update_ids). */
export function continueAsNewLeaving(undeliveredUpdateIds: string[]) {
  return { command: { case: "continueAsNew" as const, value: { input: json(2), undeliveredUpdateIds } } };
}

/** Dedup keys of the run's inbox rows (inputs waiting for a workflow task), in arrival order. */
export async function inboxDedupKeys(h: Harness, runId: string): Promise<string[]> {
  const rows = await h.sql<{ dedup_key: string }[]>`select dedup_key from dex.inbox where run_id = ${runId} order by id`;
  return rows.map((r) => r.dedup_key);
}

/** The run an update id is claimed for in `runId`'s continue-as-new chain (dex.update_ids), if any. */
export async function updateClaimOf(h: Harness, runId: string, updateId: string): Promise<string | undefined> {
  const [row] = await h.sql<{ run_id: string }[]>`
    select run_id from dex.update_ids
    where chain_id = coalesce((select chain_id from dex.run_chains where run_id = ${runId}), ${runId}::uuid) and update_id = ${updateId}`;
  return row?.run_id;
}

/** A group commit's batch-size histogram (count of batches, sum of requests) for one operation, from the metrics endpoint. */
export async function groupCommitStats(h: Harness, operation: string): Promise<{ count: number; sum: number }> {
  const text = await (await fetch(`http://${h.server.metricsAddress}/metrics`)).text();
  const read = (name: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${name}{operation="${operation}"}`));
    return line ? Number(line.split(" ").at(-1)) : 0;
  };
  return { count: read("dex_group_commit_batch_size_count"), sum: read("dex_group_commit_batch_size_sum") };
}

/** Sessions of the server's pools waiting for a lock now. */
export async function serverLockWaiters(h: Harness): Promise<number> {
  const [row] = await h.sql<{ n: number }[]>`
    select count(*)::int as n from pg_stat_activity
    where datname = current_database() and application_name like 'dex-server%' and wait_event_type = 'Lock'`;
  return row!.n;
}

/** A row lock a test holds in a transaction of its own: released (and committed) by release(). */
export interface HeldLock {
  /** Releases the lock, after running `beforeCommit` in the holding transaction. */
  release(beforeCommit?: (tx: postgres.TransactionSql) => Promise<unknown>): Promise<void>;
}

/**
 * Runs `lock` (a locking select) in a transaction of the test's own and keeps that transaction
 * open until release(); resolves once the lock is held.
 */
export async function holdLock(h: Harness, lock: (tx: postgres.TransactionSql) => Promise<unknown>): Promise<HeldLock> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  let beforeCommit: ((tx: postgres.TransactionSql) => Promise<unknown>) | undefined;
  const holder = h.sql.begin(async (tx) => {
    await lock(tx);
    locked();
    await released;
    if (beforeCommit) await beforeCommit(tx);
  });
  await Promise.race([isLocked, holder]);
  return {
    async release(inside) {
      beforeCommit = inside;
      release();
      await holder;
    },
  };
}

/** Holds a run's row lock (FOR NO KEY UPDATE, as the engine's writers take it); see holdLock. */
export function holdRunLock(h: Harness, runId: string): Promise<HeldLock> {
  return holdLock(h, (tx) => tx`select 1 from dex.runs where id = ${runId} for no key update`);
}

/** Test support for concurrency keys: starts with a key, the key's state in SQL, and holding its lock. */
import { completeRun, pollWorkflowTaskOf, uniqueId, type Harness } from "./helpers.js";

/** The class id of the keys' advisory locks (server/src/store/concurrency-keys.ts). */
export const KEY_LOCK_CLASS = 0x646b6579;

export function keyHelpers(harness: () => Harness) {
  async function start(key: string, options: { priority?: number; limit?: number; instanceId?: string } = {}): Promise<string> {
    const { runId } = await harness().client.startWorkflow({
      workflowName: "wf",
      instanceId: options.instanceId ?? uniqueId("ck"),
      concurrencyKey: key,
      concurrencyLimit: options.limit ?? 0,
      ...(options.priority === undefined ? {} : { priority: options.priority }),
    });
    return runId;
  }

  /** Who holds the key's slots, who waits (in line order), and which runs of it have a workflow task. */
  async function keyState(key: string): Promise<{ holders: string[]; waiting: string[]; withTask: string[] }> {
    const rows = await harness().sql<{ id: string; status: string; concurrency_waiting: boolean; has_task: boolean }[]>`
      select r.id, r.status, r.concurrency_waiting,
             exists (select 1 from dex.workflow_tasks w where w.run_id = r.id) as has_task
      from dex.runs r where r.concurrency_key = ${key} order by r.priority desc, r.id`;
    const open = rows.filter((r) => r.status === "CREATED" || r.status === "RUNNING");
    return {
      holders: open.filter((r) => !r.concurrency_waiting).map((r) => r.id).sort(),
      waiting: open.filter((r) => r.concurrency_waiting).map((r) => r.id),
      withTask: rows.filter((r) => r.has_task).map((r) => r.id).sort(),
    };
  }

  /** Polls the run's workflow task and completes the run with it. */
  async function complete(runId: string, result: unknown = "done"): Promise<void> {
    const h = harness();
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun(result)] });
  }

  /** Runs `body` while a transaction of the test holds the key's advisory lock, as a hand-over in progress would. */
  async function whileKeyLocked<T>(key: string, body: () => Promise<T>): Promise<T> {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = harness().sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${KEY_LOCK_CLASS}::int, hashtext(${key}))`;
      locked();
      await released;
    });
    await isLocked;
    try {
      return await body();
    } finally {
      release();
      await holder;
    }
  }

  /** Backends of this database waiting for an advisory lock. */
  async function keyLockWaiters(): Promise<number> {
    const [row] = await harness().sql<{ n: number }[]>`
      select count(*)::int as n from pg_locks
      where locktype = 'advisory' and not granted
        and database = (select oid from pg_database where datname = current_database())`;
    return row!.n;
  }

  return { start, keyState, complete, whileKeyLocked, keyLockWaiters };
}

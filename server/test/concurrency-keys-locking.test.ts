/**
 * Concurrency keys under contention: the lock order of engine/concurrency-keys.ts
 * shown step by step (a test transaction holds a key's lock the way a
 * hand-over does), and client calls racing with hand-overs.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { RunStatus } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { keyHelpers, KEY_LOCK_CLASS } from "./concurrency-keys-support.js";
import { byRunId, completeRun, kinds, pollWorkflowTaskOf, startHarness, uniqueId, type Harness } from "./helpers.js";

describe("concurrency keys: locking", () => {
  let h: Harness;
  let sql: postgres.Sql;
  beforeAll(async () => {
    h = await startHarness();
    sql = postgres(h.db.url, { max: 2, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql.end();
    await h.close();
  });
  const { start, keyState, complete, whileKeyLocked, keyLockWaiters } = keyHelpers(() => h);

  it("CancelRun and TerminateRun of a waiting run wait for the key's lock before locking the run; SendEvent needs no key lock", async () => {
    for (const call of ["cancelRun", "terminateRun"] as const) {
      const key = uniqueId("key");
      const a = await start(key);
      const w = await start(key);
      const { pending } = await whileKeyLocked(key, async () => {
        const pending = h.client[call]({ run: byRunId(w), reason: "lock order" });
        await waitFor(async () => (await keyLockWaiters()) === 1, { message: `${call} to wait for the key's lock` });
        // Waiting for the key, the call holds no lock on the run: a hand-over holding the key may need that row.
        await h.sql`select id from dex.runs where id = ${w} for no key update nowait`;
        // An event for the waiting run does not wait for the key.
        await h.client.sendEvent({ run: byRunId(w), eventId: "meanwhile" });
        return { pending };
      });
      await pending;
      expect((await h.client.getRunResult({ run: byRunId(w) })).status).toBe(call === "cancelRun" ? RunStatus.CANCELLED : RunStatus.TERMINATED);
      const history = await h.client.getRunHistory({ run: byRunId(w) });
      expect(kinds(history.events)).toEqual(
        call === "cancelRun" ? ["runStarted", "externalEventReceived", "cancelRequested"] : ["runStarted", "runTerminated"],
      );
      expect(await keyState(key)).toEqual({ holders: [a], waiting: [], withTask: [a] });
      await complete(a);
    }
  });

  it("a cancellation that took the key's lock first but finds the run admitted meanwhile lets go of the key before locking it", async () => {
    const key = uniqueId("key");
    const a = await start(key);
    const w = await start(key);
    let runLocked!: () => void;
    const isRunLocked = new Promise<void>((resolve) => (runLocked = resolve));
    const { pending, completion } = await whileKeyLocked(key, async () => {
      const pending = h.client.cancelRun({ run: byRunId(w), reason: "late" });
      await waitFor(async () => (await keyLockWaiters()) === 1, { message: "CancelRun to wait for the key's lock" });
      // Meanwhile a's end gave w the slot (written directly here: the test holds the key's lock) ...
      await sql.begin(async (tx) => {
        await tx`update dex.runs set status = 'COMPLETED', ended_at = now() where id = ${a}`;
        await tx`delete from dex.workflow_tasks where run_id = ${a}`;
        await tx`update dex.runs set concurrency_waiting = false where id = ${w}`;
        await tx`insert into dex.workflow_tasks (queue_name, run_id, priority) values ('default', ${w}, 50)`;
      });
      // ... and w's own completion now holds w's row and waits for the key, as a hand-over does (place (a)).
      const completion = sql.begin(async (tx) => {
        await tx`select id from dex.runs where id = ${w} for no key update`;
        runLocked();
        await tx`select pg_advisory_xact_lock(${KEY_LOCK_CLASS}::int, hashtext(${key}))`;
      });
      await isRunLocked;
      await waitFor(async () => (await keyLockWaiters()) === 2, { message: "the completion to wait for the key's lock" });
      return { pending, completion };
    });
    // CancelRun gets the key first; locking w now would deadlock with the completion. It lets go and retries.
    await completion;
    expect(await pending).toMatchObject({ runId: w, alreadyRequested: false });
    expect(await keyState(key)).toEqual({ holders: [w], waiting: [], withTask: [w] });
    const task = await pollWorkflowTaskOf(h, w);
    expect(kinds(task.newEvents)).toEqual(["cancelRequested"]);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [{ command: { case: "cancelRun", value: {} } }] });
    expect((await h.client.getRunResult({ run: byRunId(w) })).status).toBe(RunStatus.CANCELLED);
  });

  it("events, cancellations and terminations of waiting runs race with hand-overs without deadlock or a stranded run", async () => {
    const key = uniqueId("key");
    const limit = 2;
    const ids = await Promise.all(Array.from({ length: 30 }, () => start(key, { limit })));
    expect((await keyState(key)).waiting).toHaveLength(28);
    let draining = true;
    let maxHolders = 0;
    const work = async (workerId: string) => {
      while (draining) {
        const { tasks } = await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId, maxTasks: 5, maxWait: { seconds: 1n } });
        for (const t of tasks) {
          maxHolders = Math.max(maxHolders, (await keyState(key)).holders.length);
          // ABORTED: a cancel or event arrived meanwhile (handed out again); NOT_FOUND: terminated meanwhile.
          await h.worker.completeWorkflowTask({ taskToken: t.taskToken, commands: [completeRun("ok")] }).catch((err: { code?: string }) => {
            if (err.code !== "ABORTED" && err.code !== "NOT_FOUND") throw err;
          });
        }
      }
    };
    const workers = [work("race-1"), work("race-2")];
    // Client calls on runs that are waiting, holding, or just ended: only "already ended" may fail them.
    const alreadyEnded = (err: { code?: string }) => {
      if (err.code !== "FAILED_PRECONDITION") throw err;
    };
    await Promise.all([
      ...ids.map((runId, i) => h.client.sendEvent({ run: byRunId(runId), eventId: `e-${i}` }).catch(alreadyEnded)),
      ...ids.slice(10, 20).map((runId) => h.client.cancelRun({ run: byRunId(runId), reason: "race" }).catch(alreadyEnded)),
      ...ids.slice(20, 25).map((runId) => h.client.terminateRun({ run: byRunId(runId), reason: "race" }).catch(alreadyEnded)),
    ]);
    try {
      await waitFor(
        async () => {
          const [row] = await h.sql<{ n: number }[]>`
            select count(*)::int as n from dex.runs where concurrency_key = ${key} and status in ('CREATED', 'RUNNING')`;
          return row!.n === 0;
        },
        { timeoutMs: 60_000, message: "every run of the key to end" },
      );
    } finally {
      draining = false;
      await Promise.all(workers);
    }
    expect(maxHolders).toBeLessThanOrEqual(limit);
    const statuses = await h.sql<{ status: string; n: number }[]>`
      select status, count(*)::int as n from dex.runs where concurrency_key = ${key} group by status`;
    const byStatus = Object.fromEntries(statuses.map((r) => [r.status, r.n]));
    expect((byStatus.COMPLETED ?? 0) + (byStatus.CANCELLED ?? 0) + (byStatus.TERMINATED ?? 0)).toBe(30);
    expect(byStatus.TERMINATED ?? 0).toBeLessThanOrEqual(5);
  });

});

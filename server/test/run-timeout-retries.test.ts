/**
 * Run timeouts that a try leaves due are retried with a back-off, never at once
 * (docs/decisions/0032-loops-that-do-not-stall.md, review 1): a full report whose runs all fail
 * used to make the timer loop pass again at once, and so spin, one pass and one attempt per run
 * after another, for as long as they kept failing.
 *
 * A bare TimerLoop over a database of its own (no server runs on it, so nothing else ends the
 * runs), with its pass, its queue and its statements real; only ending a run is replaced by a
 * statement that fails, as a database that refuses the transaction would. The test counts
 * hand-overs until an ordinary timer, due 1.5 s (database clock) after the run timeouts, fires
 * through the same loop: a count over a window that a state closes, not a timing.
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskQueueType } from "@dex/proto";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { silentLogger, type Logger } from "../src/index.js";
import { RunTimeoutQueue } from "../src/engine/run-timeouts.js";
import { TimerLoop } from "../src/engine/timer-loop.js";
import { Wakeups } from "../src/engine/wakeups.js";
import { serveDatabase, startWith, uniqueId } from "./helpers.js";

const BATCH = 3;

describe("run timeouts left due", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  /** BATCH runs with a run timeout of an hour, and one run with an ordinary timer an hour out. */
  async function createRuns(): Promise<{ timedRuns: string[]; sleeper: string }> {
    const server = await serveDatabase(db);
    try {
      await server.queues.createTaskQueue({ name: "nobody-polls", type: TaskQueueType.WORKFLOW });
      const timedRuns: string[] = [];
      for (let i = 0; i < BATCH; i++) {
        const { runId } = await server.client.startWorkflow({
          workflowName: "wf",
          instanceId: uniqueId("left-due"),
          taskQueue: "nobody-polls",
          runTimeout: { seconds: 3_600n },
        });
        timedRuns.push(runId);
      }
      const sleeper = await startWith(server, [{ command: { case: "startTimer", value: { seq: 1, duration: { seconds: 3_600n } } } }]);
      return { timedRuns, sleeper };
    } finally {
      await server.close();
    }
  }

  it("a full report whose runs all fail is retried with a back-off, not at once", async () => {
    const { timedRuns, sleeper } = await createRuns();
    const sql = postgres(db.url, { max: 4, onnotice: () => {} });
    const warnings: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (message) => warnings.push(message) };
    let tries = 0;
    const runTimeouts = new RunTimeoutQueue(async () => {
      tries++;
      await sql`select 1 / 0`; // fails in the database, every time
      return "ended";
    }, logger);
    const loop = new TimerLoop(
      { sql, wakeups: new Wakeups(), logger, announce: () => {}, runTimeouts },
      { batchSize: BATCH, lockedRetryMs: 20, maxSleepMs: 1_000 },
    );
    try {
      await sql`update dex.timers set fire_at = now() where run_id = any(${timedRuns}::uuid[]) and kind = 'run_timeout'`;
      await sql`update dex.timers set fire_at = now() + interval '1.5 seconds' where run_id = ${sleeper} and seq = 1`;
      loop.start();
      await waitFor(() => loop.stats.fired === 1, { message: "the ordinary timer to fire through the same loop" });
      const { runTimeoutBatches, runTimeoutsEnded, runTimeoutsLeftDue } = loop.stats;

      // Retried: the failures did not drop the runs until the next maxSleepMs pass.
      expect(runTimeoutBatches).toBeGreaterThanOrEqual(3);
      // With the back-off (20, 40, 80 … ms, up to maxSleepMs) about 8 hand-overs fit in 1.5 s,
      // and fewer on a loaded machine; a loop that passed again at once made hundreds.
      expect(runTimeoutBatches).toBeLessThanOrEqual(15);
      expect(tries).toBeLessThanOrEqual(15 * BATCH);
      expect(runTimeoutsEnded).toBe(0);
      expect(runTimeoutsLeftDue).toBeGreaterThan(0);
      expect(new Set(warnings)).toEqual(new Set(["run timeout could not end the run; retrying on a later timer pass"]));
      // Nothing was lost: every run timeout is still due.
      const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from dex.timers where run_id = any(${timedRuns}::uuid[]) and kind = 'run_timeout' and fire_at <= now()`;
      expect(row!.n).toBe(BATCH);
    } finally {
      await loop.stop();
      await sql.end();
    }
  });
});

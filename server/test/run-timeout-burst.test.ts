/**
 * Run timeouts are ended off the timer loop's pass (docs/decisions/0032-loops-that-do-not-stall.md):
 * a burst of due run timeouts, one of whose runs is locked by a long transaction, neither stops
 * the other runs from timing out nor delays an ordinary timer; each run times out once. A run
 * timeout that comes due after the one whose run is locked was tried still ends its run (review 1:
 * the locked run, due first, headed every later batch and each waited for its lock).
 *
 * The burst is made due with one UPDATE of the run_timeout rows' fire_at (the runs start with
 * a run timeout of an hour), so all of them are due at once whatever the start took. Every
 * wait is for a state, with a deadline.
 *
 * DEX_MEASURE_BURST=<runs> also runs the measurement of decision 0032: how long the timer loop's
 * passes that saw the burst lasted, from the loop's own debug log (printed, not asserted).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskQueueType } from "@dex/proto";
import { waitFor } from "@dex/testing";
import type { Logger } from "../src/index.js";
import { holdRunLock, serverLockWaiters, startHarness, startWith, uniqueId, type Harness } from "./helpers.js";

const HOUR = { seconds: 3_600n };

function startTimer(seq: number, ms: number) {
  return { command: { case: "startTimer" as const, value: { seq, duration: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 } } } };
}

async function startSleepers(h: Harness, count: number): Promise<string[]> {
  const ids: string[] = [];
  // In chunks, so a loaded machine does not see hundreds of calls at once.
  for (let i = 0; i < count; i += 50) {
    const chunk = await Promise.all(
      Array.from({ length: Math.min(50, count - i) }, async () => {
        const { runId } = await h.client.startWorkflow({
          workflowName: "wf",
          instanceId: uniqueId("burst"),
          taskQueue: "nobody-polls",
          runTimeout: HOUR,
        });
        return runId;
      }),
    );
    ids.push(...chunk);
  }
  return ids;
}

async function openRuns(h: Harness, runIds: string[]): Promise<number> {
  const [row] = await h.sql<{ n: number }[]>`
    select count(*)::int as n from dex.runs where id = any(${runIds}::uuid[]) and status <> 'TIMED_OUT'`;
  return row!.n;
}

async function timerFired(h: Harness, runId: string): Promise<boolean> {
  const rows = await h.sql`select 1 from dex.inbox where run_id = ${runId} and kind = 'timer_fired'`;
  return rows.length > 0;
}

describe("a burst of run timeouts", () => {
  let h: Harness;
  const passes: Array<{ ms: number; runTimeouts: number }> = [];
  /** Runs whose run timeout a try left due because their run was locked. */
  const leftDue = new Set<string>();
  const logger: Logger = {
    debug: (message, fields) => {
      if (message === "timer pass" && fields) passes.push(fields as { ms: number; runTimeouts: number });
      if (message.startsWith("run timeout left due") && fields) leftDue.add((fields as { runId: string }).runId);
    },
    info: () => {},
    warn: () => {},
    error: () => {},
  };
  beforeAll(async () => {
    // A statement timeout longer than any wait below: a run timeout blocked on the held lock must
    // not give up (and free a stalled pass) before the test has seen what it waits for.
    h = await startHarness({ logger, statementTimeoutMs: 300_000 });
    await h.queues.createTaskQueue({ name: "nobody-polls", type: TaskQueueType.WORKFLOW });
  });
  afterAll(async () => {
    await h.close();
  });

  /**
   * The server tried the locked run's timeout: it either skipped the run and left the timer due
   * (this loop), or waits for the run's lock (the loop before review 1, so that the tests below
   * fail on it at their real assertion, not here).
   */
  async function triedLockedRun(runId: string): Promise<boolean> {
    return leftDue.has(runId) || (await serverLockWaiters(h)) > 0;
  }

  it("ends every run once, and neither a locked run nor the burst holds up an ordinary timer", async () => {
    const runIds = await startSleepers(h, 60);
    const [locked, ...others] = runIds as [string, ...string[]];
    const sleeper = await startWith(h, [startTimer(1, 3_600_000)]);

    // The locked run's timeout is due first, so a loop that ended them one by one inside its pass
    // would wait for that lock before anything else.
    const held = await holdRunLock(h, locked);
    try {
      await h.sql`update dex.timers set fire_at = now() - interval '1 second' where run_id = ${locked} and kind = 'run_timeout'`;
      await h.sql`update dex.timers set fire_at = now() where run_id = any(${others}::uuid[]) and kind = 'run_timeout'`;
      await waitFor(() => triedLockedRun(locked), { message: "the run timeout of the locked run to be tried" });

      // Due only now, after the pass that handed the burst over: it needs a later pass.
      await h.sql`update dex.timers set fire_at = now() where run_id = ${sleeper} and seq = 1`;
      await waitFor(async () => (await openRuns(h, others)) === 0 && (await timerFired(h, sleeper)), {
        message: "the other runs to time out and the ordinary timer to fire while one run's lock is held",
      });
      expect(await openRuns(h, [locked])).toBe(1);
    } finally {
      await held.release();
    }
    await waitFor(async () => (await openRuns(h, [locked])) === 0, { message: "the locked run to time out once released" });

    const events = await h.sql<{ n: number }[]>`
      select count(*)::int as n from dex.history_events
      where run_id = any(${runIds}::uuid[]) and kind = 'run_timed_out' group by run_id`;
    expect(events).toHaveLength(runIds.length);
    expect(events.every((e) => e.n === 1)).toBe(true);
    expect(await h.sql`select 1 from dex.timers where run_id = any(${runIds}::uuid[])`).toHaveLength(0);
  });

  it("a run timeout that comes due while another run's lock is held still ends its run (review 1)", async () => {
    const [locked, later] = (await startSleepers(h, 2)) as [string, string];
    const held = await holdRunLock(h, locked);
    try {
      await h.sql`update dex.timers set fire_at = now() - interval '1 second' where run_id = ${locked} and kind = 'run_timeout'`;
      await waitFor(() => triedLockedRun(locked), { message: "the run timeout of the locked run to be tried" });
      // Due after the locked run was tried (and, on the old loop, while its batch waited for the lock).
      await h.sql`update dex.timers set fire_at = now() where run_id = ${later} and kind = 'run_timeout'`;
      await waitFor(async () => (await openRuns(h, [later])) === 0, {
        timeoutMs: 10_000,
        message: "a run timeout due later to end while one run's lock is held",
      });
      expect(await openRuns(h, [locked])).toBe(1);
    } finally {
      await held.release();
    }
    // Left due, not dropped: retried after the lock is released.
    await waitFor(async () => (await openRuns(h, [locked])) === 0, { message: "the locked run to time out once released" });
  });

  it.runIf(process.env.DEX_MEASURE_BURST)("measurement: how long the passes that saw a burst lasted", async () => {
    const count = Number(process.env.DEX_MEASURE_BURST);
    const runIds = await startSleepers(h, count);
    passes.length = 0;
    const [due] = await h.sql<{ at: Date }[]>`
      update dex.timers set fire_at = now() where run_id = any(${runIds}::uuid[]) and kind = 'run_timeout' returning fire_at as at`;
    await waitFor(async () => (await openRuns(h, runIds)) === 0, { message: `all ${count} runs TIMED_OUT`, timeoutMs: 120_000 });
    const [span] = await h.sql<{ ms: number }[]>`
      select (extract(epoch from max(ended_at) - ${due!.at}::timestamptz) * 1000)::float8 as ms from dex.runs where id = any(${runIds}::uuid[])`;
    const seen = passes.filter((p) => p.runTimeouts > 0);
    console.info(
      `burst of ${count} run timeouts: passes that saw it ${seen.length}, longest ${Math.max(...seen.map((p) => p.ms)).toFixed(1)} ms, ` +
        `all ended ${span!.ms.toFixed(0)} ms after they came due`,
    );
  });
});

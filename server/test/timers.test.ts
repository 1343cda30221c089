/**
 * Durable timers and the per-server timer loop (docs/worker-protocol.md,
 * "Timers"): never early by the database clock, fired once across servers,
 * fired after a restart, cancellable, and one bounded statement per pass
 * however many runs sleep.
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { silentLogger, type Logger } from "../src/index.js";
import { TimerLoop } from "../src/engine/timer-loop.js";
import { Wakeups } from "../src/engine/wakeups.js";
import { fireDueTimers } from "../src/store/timers.js";
import { byRunId, completeRun, kinds, pollWorkflowTaskOf, serveDatabase, startHarness, startWith, type Harness } from "./helpers.js";

function startTimer(seq: number, ms: number) {
  return { command: { case: "startTimer" as const, value: { seq, duration: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 } } } };
}

function startTimerAt(seq: number, at: Date) {
  const ms = at.getTime();
  return { command: { case: "startTimer" as const, value: { seq, fireTime: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 } } } };
}

function cancelTimer(seq: number) {
  return { command: { case: "cancelTimer" as const, value: { seq } } };
}


/** The fire time recorded in the run's timer_started event for `seq`. */
async function recordedFireTime(h: Harness, runId: string, seq: number): Promise<Date> {
  const { events } = await h.client.getRunHistory({ run: byRunId(runId) });
  for (const event of events) {
    const a = event.attributes;
    if (a.case === "timerStarted" && a.value.seq === seq) return timestampDate(a.value.fireTime!);
  }
  throw new Error(`no timer_started seq ${seq} in run ${runId}`);
}

function firedSeqs(task: { newEvents: Array<{ attributes: { case: string | undefined; value?: unknown } }> }): number[] {
  return task.newEvents.flatMap((e) => (e.attributes.case === "timerFired" ? [(e.attributes.value as { seq: number }).seq] : []));
}

describe("timers", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("fires a timer into the inbox no earlier than its recorded fire time (database clock)", async () => {
    const runId = await startWith(h, [startTimer(1, 300)]);
    const fireTime = await recordedFireTime(h, runId, 1);
    const task = await pollWorkflowTaskOf(h, runId);
    expect(kinds(task.newEvents)).toEqual(["timerFired"]);
    expect(firedSeqs(task)).toEqual([1]);
    // The inbox row's created_at is the firing statement's now(): compared in
    // SQL, at the database's precision, against the fire time recorded in history.
    const [row] = await h.sql<{ not_early: boolean }[]>`
      select created_at >= ${fireTime.toISOString()}::timestamptz as not_early
      from dex.inbox where run_id = ${runId} and kind = 'timer_fired'`;
    expect(row?.not_early).toBe(true);
    expect(await h.sql`select 1 from dex.timers where run_id = ${runId}`).toHaveLength(0);

    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("woke")] });
    const { events } = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(kinds(events)).toEqual([
      "runStarted",
      "workflowTaskCompleted",
      "timerStarted",
      "timerFired",
      "workflowTaskCompleted",
      "runCompleted",
    ]);
  });

  it("a zero-length timer fires at once (the commit hints this server's loop)", async () => {
    const runId = await startWith(h, [startTimer(1, 0)]);
    const task = await pollWorkflowTaskOf(h, runId);
    expect(firedSeqs(task)).toEqual([1]);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("ok")] });
  });

  it("a cancelled timer never fires, while a later one does", async () => {
    // Timer 2 (zero) gives the run a second task in which it cancels timer 1;
    // timer 3 fires after timer 1 would have, so once 3 has fired, 1 would have too.
    const runId = await startWith(h, [startTimer(1, 2_000), startTimer(2, 0)]);
    const second = await pollWorkflowTaskOf(h, runId);
    expect(firedSeqs(second)).toEqual([2]);
    const fire1 = await recordedFireTime(h, runId, 1);
    await h.worker.completeWorkflowTask({
      taskToken: second.taskToken,
      commands: [cancelTimer(1), startTimerAt(3, new Date(fire1.getTime() + 200))],
    });
    expect((await h.sql`select seq from dex.timers where run_id = ${runId}`).map((r) => r.seq)).toEqual([3]);
    const third = await pollWorkflowTaskOf(h, runId);
    expect(firedSeqs(third)).toEqual([3]);
    await h.worker.completeWorkflowTask({ taskToken: third.taskToken, commands: [completeRun("done")] });
    const { events } = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(kinds(events).filter((k) => k === "timerFired")).toHaveLength(2);
    expect(kinds(events)).toContain("timerCancelled");
    expect(await h.sql`select 1 from dex.inbox where run_id = ${runId}`).toHaveLength(0);
  });

  it("a run that ends takes its timers with it", async () => {
    const runId = await startWith(h, [startTimer(1, 3_600_000), startTimer(2, 0)]);
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("early")] });
    expect(await h.sql`select 1 from dex.timers where run_id = ${runId}`).toHaveLength(0);
  });

  it("two servers on one database fire each timer once, and a poll on either gets the task", async () => {
    const other = await serveDatabase(h.db);
    try {
      // One fire time for all, a little ahead: both servers' loops learn it
      // (this one from the commit's hint, the other from its pass's "next
      // fire time") and wake for it together.
      const [ahead] = await h.sql<{ at: Date }[]>`select now() + interval '800 milliseconds' as at`;
      const at = ahead!.at;
      const runIds: string[] = [];
      for (let i = 0; i < 20; i++) runIds.push(await startWith(h, [startTimerAt(1, at)]));
      // Half the tasks are picked up through the other server.
      for (const [i, runId] of runIds.entries()) {
        const task = await pollWorkflowTaskOf(i % 2 === 0 ? h : other, runId);
        expect(firedSeqs(task)).toEqual([1]);
        await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun(i)] });
      }
      const [counts] = await h.sql<{ fired: number; inbox: number; timers: number }[]>`
        select (select count(*)::int from dex.history_events where run_id = any(${runIds}::uuid[]) and kind = 'timer_fired') as fired,
               (select count(*)::int from dex.inbox where run_id = any(${runIds}::uuid[])) as inbox,
               (select count(*)::int from dex.timers where run_id = any(${runIds}::uuid[])) as timers`;
      expect(counts).toEqual({ fired: runIds.length, inbox: 0, timers: 0 });
    } finally {
      await other.close();
    }
  });

  it("one pass reads the head of the index only, however many runs sleep", async () => {
    // 10,000 sleeping timers an hour out (their runs need not exist: a pass
    // never reaches them), then a pass inside a transaction whose own table
    // statistics (pg_stat_xact_user_tables) count the rows it read.
    await h.sql`
      insert into dex.timers (run_id, seq, kind, fire_at, workflow_queue, priority, event)
      select gen_random_uuid(), 1, 'timer', now() + interval '1 hour' + i * interval '1 millisecond', 'default', 50, ''::bytea
      from generate_series(1, 10000) as i`;
    await h.sql`analyze dex.timers`;
    try {
      // Runs with short timers still fire, each once, while the sleepers wait.
      const runIds: string[] = [];
      for (let i = 0; i < 5; i++) runIds.push(await startWith(h, [startTimer(1, 100)]));
      for (const runId of runIds) expect(firedSeqs(await pollWorkflowTaskOf(h, runId))).toEqual([1]);

      const stats = await h.sql.begin(async (tx) => {
        const pass = await fireDueTimers(tx, { limit: 500 });
        const [row] = await tx<{ seq_scan: number; seq_tup_read: number; idx_tup_fetch: number }[]>`
          select coalesce(seq_scan, 0)::int as seq_scan, coalesce(seq_tup_read, 0)::int as seq_tup_read,
                 coalesce(idx_tup_fetch, 0)::int as idx_tup_fetch
          from pg_stat_xact_user_tables where schemaname = 'dex' and relname = 'timers'`;
        return { pass, row: row! };
      });
      expect(stats.pass.due).toBe(0);
      expect(stats.pass.nextInMs).toBeGreaterThan(3_000_000);
      expect(stats.row.seq_scan).toBe(0);
      // The due-range scan finds nothing due and the next-fire probe fetches
      // one live row; the index may still hold entries of timers fired
      // earlier in this file (dead until vacuum), but nothing scales with the
      // 10,000 sleepers.
      expect(stats.row.idx_tup_fetch).toBeLessThan(100);
    } finally {
      await h.sql`delete from dex.timers where fire_at > now() + interval '50 minutes'`;
    }
  });
});

describe("timers across restarts and outages", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  it("a timer that came due while no server ran fires as soon as a server starts", async () => {
    const first = await serveDatabase(db);
    let runId: string;
    try {
      runId = await startWith(first, [startTimer(1, 1_000)]);
    } finally {
      await first.close();
    }
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      // Still waiting (the first server stopped before it was due), and due now.
      await waitFor(async () => {
        const [row] = await sql<{ due: boolean }[]>`select fire_at <= now() as due from dex.timers where run_id = ${runId}`;
        if (!row) throw new Error("the timer fired before the server stopped: this test needs it pending");
        return row.due;
      });
    } finally {
      await sql.end();
    }
    const second = await serveDatabase(db);
    try {
      const task = await pollWorkflowTaskOf(second, runId);
      expect(firedSeqs(task)).toEqual([1]);
      await second.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("late but not lost")] });
    } finally {
      await second.close();
    }
  });

  /** Runs with one timer each, an hour out, created through a server that is then stopped. */
  async function sleepingRuns(n: number): Promise<string[]> {
    const server = await serveDatabase(db);
    try {
      const runIds: string[] = [];
      for (let i = 0; i < n; i++) runIds.push(await startWith(server, [startTimer(1, 3_600_000)]));
      return runIds;
    } finally {
      await server.close();
    }
  }

  it("a pass that hits its batch limit is followed at once by the next, until the backlog is gone", async () => {
    const runIds = await sleepingRuns(25);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    const loop = new TimerLoop({ sql, wakeups: new Wakeups(), logger: silentLogger, announce: () => {} }, { batchSize: 10 });
    try {
      await sql`update dex.timers set fire_at = now() where run_id = any(${runIds}::uuid[])`;
      loop.start();
      await waitFor(() => loop.stats.fired === runIds.length, { message: "the backlog to fire" });
      expect(loop.stats.passes).toBeGreaterThanOrEqual(3);
      const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from dex.inbox where run_id = any(${runIds}::uuid[]) and kind = 'timer_fired'`;
      expect(row?.n).toBe(runIds.length);
    } finally {
      await loop.stop();
      await sql.end();
    }
  });

  it("a run locked by someone else is skipped, not waited for, and fired once released", async () => {
    const runId = (await sleepingRuns(1))[0]!;
    const sql = postgres(db.url, { max: 2, onnotice: () => {} });
    const loop = new TimerLoop(
      { sql, wakeups: new Wakeups(), logger: silentLogger, announce: () => {} },
      { lockedRetryMs: 10, maxSleepMs: 5_000 },
    );
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const lockHeld = new Promise<void>((resolve) => (locked = resolve));
    const holder = sql.begin(async (tx) => {
      await tx`select 1 from dex.runs where id = ${runId} for no key update`;
      locked();
      await released;
    });
    try {
      await lockHeld;
      await sql`update dex.timers set fire_at = now() where run_id = ${runId}`;
      loop.start();
      // Passes keep coming while the run is locked (skipped, retried shortly:
      // far more passes than maxSleepMs alone would allow), and nothing fires.
      await waitFor(() => loop.stats.passes >= 5, { message: "retried passes" });
      expect(loop.stats.fired).toBe(0);
      expect(loop.stats.errors).toBe(0);
      release();
      await holder;
      await waitFor(() => loop.stats.fired === 1, { message: "the timer to fire after the lock" });
    } finally {
      release();
      await holder.catch(() => {});
      await loop.stop();
      await sql.end();
    }
  });

  it("the loop survives database errors: it logs once, backs off, and fires once the database answers", async () => {
    const runId = (await sleepingRuns(1))[0]!;
    const warnings: string[] = [];
    const infos: string[] = [];
    const logger: Logger = { ...silentLogger, warn: (msg) => warnings.push(msg), info: (msg) => infos.push(msg) };
    // Real errors: the loop's connection gives up on locks after 50 ms, and the
    // test holds an exclusive lock on dex.timers.
    const loopSql = postgres(db.url, { max: 1, onnotice: () => {}, connection: { lock_timeout: 50 } });
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    const loop = new TimerLoop(
      { sql: loopSql, wakeups: new Wakeups(), logger, announce: () => {} },
      { maxSleepMs: 100, errorBackoff: { initialMs: 20, maxMs: 100 } },
    );
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const lockHeld = new Promise<void>((resolve) => (locked = resolve));
    const holder = sql.begin(async (tx) => {
      await tx`update dex.timers set fire_at = now() where run_id = ${runId}`;
      await tx`lock table dex.timers in access exclusive mode`;
      locked();
      await released;
    });
    try {
      await lockHeld;
      loop.start();
      await waitFor(() => loop.stats.errors >= 3, { message: "failed passes" });
      expect(loop.stats.fired).toBe(0);
      release();
      await holder;
      await waitFor(() => loop.stats.fired === 1, { message: "the timer to fire after the outage" });
      expect(warnings).toEqual(["timer loop pass failed; backing off"]);
      expect(infos).toContain("timer loop recovered");
      const [row] = await sql<{ n: number }[]>`select count(*)::int as n from dex.inbox where run_id = ${runId} and kind = 'timer_fired'`;
      expect(row?.n).toBe(1);
    } finally {
      release();
      await holder.catch(() => {});
      await loop.stop();
      await Promise.all([loopSql.end(), sql.end()]);
    }
  });
});

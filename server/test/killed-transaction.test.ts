/**
 * A transaction whose database connection is killed (pg_terminate_backend, a
 * Postgres restart, idle_in_transaction_session_timeout) must leave nothing
 * behind and must not take the process down.
 *
 * postgres.js 3.4.9 did neither: after the close, statements the transaction's
 * callback still issued ran on the reconnected connection in autocommit (the
 * chaos suite saw torn runs: history longer than runs.history_length), and
 * statements pipelined onto the dead connection threw an uncaught TypeError
 * from a setImmediate (a `dex server` exited 1). patches/postgres@3.4.9.patch
 * fixes both; the first two tests fail without it (the second as an unhandled
 * error, which fails the vitest run). See chaos/repro/killed-transaction.ts.
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { openDatabase, type Sql } from "../src/store/db.js";
import { byRunId, kinds, pollWorkflowTaskOf, serveDatabase, startWith, uniqueId, type Harness, failure } from "./helpers.js";

describe("a transaction whose connection is killed", () => {
  let db: TestDatabase;
  let admin: postgres.Sql;

  beforeAll(async () => {
    db = await createTestDatabase();
    admin = postgres(db.url, { max: 2, onnotice: () => {} });
    await admin`create table killed_tx (x int)`;
  });
  afterAll(async () => {
    await admin.end();
    await db.drop();
  });

  async function rows(): Promise<number[]> {
    return (await admin<{ x: number }[]>`select x from killed_tx order by x`).map((r) => r.x);
  }

  it("runs none of the statements its callback issues after the close", async () => {
    await admin`truncate killed_tx`;
    // One connection: the pool query inside the callback waits for the connection the transaction holds.
    const sql: Sql = openDatabase({ url: db.url, maxConnections: 1, applicationName: "dex-killed-tx-test" });
    let callbackDone!: Promise<PromiseSettledResult<unknown>[]>;
    const outcome = await sql
      .begin((tx) => {
        callbackDone = (async () => {
        const { pid } = (await tx<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!;
        await tx`insert into killed_tx values (1)`;
        await admin`select pg_terminate_backend(${pid})`;
        await sql`select 1`; // runs once the dead connection is replaced
        return Promise.allSettled([tx`insert into killed_tx values (2)`, tx`insert into killed_tx values (3)`]);
        })();
        return callbackDone;
      })
      .then(
        () => "committed",
        (err: Error) => err.message,
      );
    expect(outcome).toMatch(/CONNECTION_CLOSED|terminating connection/);
    // `begin` rejects as soon as the connection closes; the callback goes on by itself.
    const laterStatements = await callbackDone;
    expect(laterStatements.map((s) => s.status)).toEqual(["rejected", "rejected"]);
    expect(await rows()).toEqual([]);
    await sql.end();
  });

  it("rejects statements pipelined onto the dead connection instead of crashing the process", async () => {
    await admin`truncate killed_tx`;
    const sql: Sql = openDatabase({ url: db.url, maxConnections: 2, applicationName: "dex-killed-tx-test" });
    let callbackDone!: Promise<PromiseSettledResult<unknown>[]>;
    const outcome = await sql
      .begin((tx) => {
        callbackDone = (async () => {
        const { pid } = (await tx<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!;
        await admin`select pg_terminate_backend(${pid})`;
        // Wait until this process has seen the close (another pool connection answers meanwhile).
        await waitFor(async () => (await sql`select count(*)::int as n from pg_stat_activity where pid = ${pid}`)[0]!.n === 0, { message: "the terminated backend to be gone" });
        return Promise.allSettled([11, 12, 13].map((x) => tx`insert into killed_tx values (${x})`));
        })();
        return callbackDone;
      })
      .then(
        () => "committed",
        (err: Error) => err.message,
      );
    expect(outcome).not.toBe("committed");
    const pipelined = await callbackDone;
    expect(pipelined.map((s) => s.status)).toEqual(["rejected", "rejected", "rejected"]);
    expect(await rows()).toEqual([]);
    // The pool still works.
    expect((await sql`select 1 as one`)[0]!.one).toBe(1);
    await sql.end();
  });
});

describe("a workflow-task completion whose connection is killed mid-transaction", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await serveDatabase(await createTestDatabase(), {}, { dropOnClose: true });
  });
  afterAll(async () => {
    await h.close();
  });

  it("writes nothing, answers UNAVAILABLE, and the same token completes it afterwards", async () => {
    const runId = await startWith(h, [{ command: { case: "startTimer", value: { seq: 1, duration: { seconds: 0n, nanos: 1_000_000 } } } }], {
      instanceId: uniqueId("killed"),
    });
    const task = await pollWorkflowTaskOf(h, runId);
    const before = await h.client.getRunHistory({ run: byRunId(runId) });

    // Hold back inserts into dex.timers so the completion stops half way: history appended, timer not yet.
    const blocker = await h.sql.reserve();
    await blocker`begin`;
    await blocker`lock table dex.timers in share mode`;
    // Handled from the start: the UNAVAILABLE answer can arrive before the terminate statement returns.
    const completing = failure(
      h.worker.completeWorkflowTask({
        taskToken: task.taskToken,
        commands: [{ command: { case: "startTimer", value: { seq: 2, duration: { seconds: 3600n } } } }],
      }),
    );
    const [waiting] = await waitFor(
      async () => {
        const found = await h.sql<{ pid: number }[]>`
          select pid from pg_stat_activity
           where datname = current_database() and wait_event_type = 'Lock' and query ilike '%dex.timers%'`;
        return found.length > 0 ? found : undefined;
      },
      { message: "a server statement to wait for the held lock" },
    );
    await h.sql`select pg_terminate_backend(${waiting!.pid})`;
    const err = await completing;
    expect(err.code).toBe("UNAVAILABLE");
    await blocker`rollback`;
    blocker.release();

    const after = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(after.events.length).toBe(before.events.length);
    const [row] = await h.sql<{ history_length: number }[]>`select history_length from dex.runs where id = ${runId}`;
    expect(Number(row!.history_length)).toBe(before.events.length);

    await h.worker.completeWorkflowTask({
      taskToken: task.taskToken,
      commands: [{ command: { case: "startTimer", value: { seq: 2, duration: { seconds: 3600n } } } }],
    });
    const done = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(done.events.map((e) => Number(e.sequence))).toEqual(done.events.map((_, i) => i + 1));
    expect(kinds(done.events).slice(before.events.length)).toContain("timerStarted");
  });
});

describe("a connection killed while it loads its types", () => {
  it("reconnects instead of crashing the process with an unhandled rejection", async () => {
    const db = await createTestDatabase();
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    // Sessions in the test database wait for pg_type too: watch and kill from another database.
    const otherDatabase = new URL(db.url);
    otherDatabase.pathname = "/postgres";
    const watcher = postgres(otherDatabase.toString(), { max: 1, onnotice: () => {} });
    const sql: Sql = openDatabase({ url: db.url, maxConnections: 1, applicationName: "dex-types-test" });
    try {
      // postgres.js reads the array types as the first statement of every new connection. Hold
      // pg_type so that statement waits, then kill its session while it does.
      const blocker = await admin.reserve();
      await blocker`begin`;
      await blocker`lock table pg_catalog.pg_type in access exclusive mode`;
      const first = sql`select 1 as one`.then(
        (rows) => rows[0]!.one,
        (err: Error) => err,
      );
      const [waiting] = await waitFor(
        async () => {
          const found = await watcher<{ pid: number }[]>`
            select pid from pg_stat_activity where application_name = 'dex-types-test' and wait_event_type = 'Lock'`;
          return found.length > 0 ? found : undefined;
        },
        { message: "the test pool's statement to wait for the held lock" },
      );
      await watcher`select pg_terminate_backend(${waiting!.pid})`;
      await blocker`rollback`;
      blocker.release();
      // The statement that opened the connection learns of the kill (dex answers UNAVAILABLE).
      const outcome = await first;
      expect([1, "57P01"]).toContain(outcome instanceof Error ? (outcome as Error & { code?: string }).code : outcome);
      expect((await sql`select 2 as two`)[0]!.two).toBe(2);
    } finally {
      await sql.end();
      await admin.end();
      await watcher.end();
      await db.drop();
    }
  });
});

describe("an admin read whose connection is killed", () => {
  it("answers UNAVAILABLE, not INTERNAL", async () => {
    const h = await serveDatabase(await createTestDatabase(), {}, { dropOnClose: true });
    const blocker = await h.sql.reserve();
    try {
      // Hold the queue table so ListTaskQueues waits on the server's pool, then kill that session.
      await blocker`begin`;
      await blocker`lock table dex.task_queues in access exclusive mode`;
      const listing = failure(h.queues.listTaskQueues({}));
      const [waiting] = await waitFor(
        async () => {
          const found = await h.sql<{ pid: number }[]>`
            select pid from pg_stat_activity
             where application_name like 'dex-server %' and wait_event_type = 'Lock' and datname = current_database()`;
          return found.length > 0 ? found : undefined;
        },
        { message: "a server statement to wait for the held lock" },
      );
      await h.sql`select pg_terminate_backend(${waiting!.pid})`;
      expect((await listing).code).toBe("UNAVAILABLE");
    } finally {
      await blocker`rollback`;
      blocker.release();
      await h.close();
    }
  });
});

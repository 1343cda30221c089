/**
 * The upgrade drill (issue 15, docs/upgrades.md, decision 0028): an "old" and a "new" dex server
 * side by side on one Postgres under load, workflows running through real worker processes, the
 * schema migrated to the new version mid-load, and each server SIGKILLed and started again while
 * runs are in flight. Nothing may be lost or duplicated: the chaos suite's invariant checker
 * (chaos/src/invariants.ts) reads the tables afterwards.
 *
 * "Old" is `dex server` as shipped (release R). "New" is the same build told it is release R+1
 * (tests/e2e/fixtures/upgrade-drill-server.mjs, ServerOptions.migrationsDir), with a sample
 * migration of R+1 that follows the expand rule, written to a temporary migrations directory (and
 * its release manifest, decision 0033; `migrate` runs while the old server is connected, and passes
 * its check of older servers because the sample is marked safe): it adds
 * columns to every table the old server writes on its hot path, a table and an index. The old
 * server must keep serving on N+1, and start again on it after a crash.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { TaskQueueType } from "@dex/proto";
import { createClient, type Client } from "@dex/sdk";
import { freePort } from "@dex/server";
import { loadMigrations, migrate, migrationsDir } from "@dex/server/store/migrator";
import { createTestDatabase, E2E_TEST_TIMEOUT_MS, waitFor, type TestDatabase } from "@dex/testing";
import { checkInvariants, type RunStatus } from "../../chaos/src/invariants.js";
import { ProcessGroup, WorkerSlot, type Managed } from "../../chaos/src/processes.js";
import { CHAOS_SCHEMA_SQL, startRequest, startRuns, waitForRunsToEnd, type OrderInput, type StartStats } from "../../chaos/src/workload.js";

const newServerFixture = "tests/e2e/fixtures/upgrade-drill-server.mjs";
/** Each stream starts at least this many runs, and goes on in waves until the drill's last restart. */
const RUNS_PER_STREAM = 24;
const WAVE = 6;
const WAVE_SPREAD_MS = 3_000;

/** A sample next migration that follows docs/upgrades.md's expand rule: additive only. */
const SAMPLE_EXPAND_SQL = `
-- Upgrade drill sample (tests only): new nullable columns on the tables the old server writes,
-- a NOT NULL column with a constant default (metadata only since Postgres 11), a new table and
-- an index on it. An old server's inserts name their columns, so none of this reaches them.
alter table dex.runs add column drill_note text;
alter table dex.history_events add column drill_note text;
alter table dex.inbox add column drill_note text;
alter table dex.workflow_tasks add column drill_note text;
alter table dex.activity_tasks add column drill_note text;
alter table dex.timers add column drill_flag boolean not null default false;
create table dex.drill_notes (
  run_id uuid primary key,
  note text not null,
  created_at timestamptz not null default now()
);
create index drill_notes_by_time on dex.drill_notes (created_at);
`;

describe("upgrade drill: old and new servers side by side", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let db: TestDatabase;
  let sql: postgres.Sql;
  let group: ProcessGroup;
  let tempDirs: string[] = [];
  const clients: Client[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    sql = postgres(db.url, { max: 4, onnotice: () => {} });
    await sql.unsafe(CHAOS_SCHEMA_SQL);
    const logDir = await mkdtemp(`${tmpdir()}/dex-upgrade-drill-logs-`);
    tempDirs.push(logDir);
    group = new ProcessGroup(logDir);
  });
  afterAll(async () => {
    clients.forEach((client) => client.close());
    await group?.close(5_000);
    await sql?.end();
    await db?.drop();
    await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
    tempDirs = [];
  });

  it("runs every workflow to completion, each activity result recorded once, across the migration and restarts of either server", async () => {
    const shipped = await loadMigrations();
    const n = shipped.at(-1)!.version;
    const nextDir = await mkdtemp(`${tmpdir()}/dex-migrations-next-`);
    tempDirs.push(nextDir);
    await cp(migrationsDir, nextDir, { recursive: true });
    await writeFile(`${nextDir}/${String(n + 1).padStart(4, "0")}_upgrade_drill_expand.sql`, SAMPLE_EXPAND_SQL);
    // The sample is the next release's, safe beside this release's servers (decision 0033).
    const manifest = JSON.parse(await readFile(`${nextDir}/releases.json`, "utf8")) as { releases: unknown[] };
    manifest.releases.push({ release: "drill-next", migrations: [{ migration: `${String(n + 1).padStart(4, "0")}_upgrade_drill_expand`, olderServers: "safe" }] });
    await writeFile(`${nextDir}/releases.json`, JSON.stringify(manifest));
    const next = await loadMigrations(nextDir);

    const [oldPort, newPort] = [await freePort(), await freePort()];
    const startOld = () =>
      group.spawn("old-server", ["cli/bin/dex.js", "server", "--host", "127.0.0.1", "--port", String(oldPort), "--insecure-no-auth"], { DEX_DATABASE_URL: db.url }, /listening on \S+/);
    const startNew = () => group.spawn("new-server", [newServerFixture, db.url, String(newPort), nextDir], {}, /listening on \S+/);
    const kill = async (server: Managed) => {
      server.child.kill("SIGKILL");
      await server.exited;
    };
    const executions = async () => Number((await sql<{ n: string }[]>`select count(*)::text as n from chaos.executions`)[0]!.n);
    const openRuns = async () => Number((await sql<{ n: string }[]>`select count(*)::text as n from dex.runs where status in ('CREATED', 'RUNNING')`)[0]!.n);
    /** Waits for `more` activity executions past the count now: the load is moving, runs are in flight. */
    const progress = async (more: number, what: string) => {
      const from = await executions();
      await waitFor(async () => (await executions()) >= from + more, { message: `${more} more activity executions (${what})` });
    };
    const openAtKills: number[] = [];

    // The old fleet: a server knowing N on a database at N, a worker process on it, load starting.
    let oldServer = await startOld();
    const oldAddress = `127.0.0.1:${oldPort}`;
    const newAddress = `127.0.0.1:${newPort}`;
    const oldClient = createClient({ address: oldAddress, retry: { maxElapsed: "120s" } });
    clients.push(oldClient);
    await oldClient.raw.queues.createTaskQueue({ name: "default", type: TaskQueueType.WORKFLOW });
    await oldClient.raw.queues.createTaskQueue({ name: "default", type: TaskQueueType.ACTIVITY });
    await new WorkerSlot(group, "worker-old", { kind: "colocated", address: oldAddress, databaseUrl: db.url, taskQueue: "default", concurrency: 10 }).start();
    const deadline = Date.now() + 180_000;
    // Each stream starts runs in waves until the last restart is done (`stopLoad`), not a fixed
    // number over a fixed time: on a loaded machine a fixed batch could all end before a crash,
    // and a checkpoint below would then wait for executions that never come.
    const stopLoad = new AbortController();
    const load = async (client: Client, prefix: string): Promise<StartStats> => {
      const all: StartStats = { runs: new Map(), retries: 0, failures: [] };
      for (let wave = 0; all.runs.size < RUNS_PER_STREAM || !stopLoad.signal.aborted; wave++) {
        if (Date.now() > deadline) break;
        const requests = Array.from({ length: WAVE }, (_, j) => {
          const i = wave * WAVE + j;
          return startRequest("chaosOrder", `${prefix}-${i}`, { timerMs: 200 + ((i * 137) % 1_000), delayMs: 300, leaseMs: 4_000 } satisfies OrderInput);
        });
        const stats = await startRuns(client, requests, { concurrency: 2, spreadMs: WAVE_SPREAD_MS, deadline });
        for (const [instance, runId] of stats.runs) all.runs.set(instance, runId);
        all.retries += stats.retries;
        all.failures.push(...stats.failures);
      }
      return all;
    };
    const oldStream = load(oldClient, "old");

    // `dex migrate` of the new release, mid-load: the old server keeps serving on N+1.
    await progress(5, "before the migration");
    expect(await migrate(sql, next)).toEqual([n + 1]);

    // The new fleet joins beside the old one.
    let newServer = await startNew();
    const newClient = createClient({ address: newAddress, retry: { maxElapsed: "120s" } });
    clients.push(newClient);
    await new WorkerSlot(group, "worker-new", { kind: "colocated", address: newAddress, databaseUrl: db.url, taskQueue: "default", concurrency: 10 }).start();
    const newStream = load(newClient, "new");

    // Either server crashes with runs in flight and starts again: the old one on the next release's schema.
    await progress(10, "before the old server's crash");
    openAtKills.push(await openRuns());
    await kill(oldServer);
    oldServer = await startOld();
    expect(oldServer.tail()).toMatch(/database schema is one release newer than this dex/);

    await progress(10, "before the new server's crash");
    openAtKills.push(await openRuns());
    await kill(newServer);
    newServer = await startNew();

    await progress(10, "before the old server's second crash");
    openAtKills.push(await openRuns());
    await kill(oldServer);
    oldServer = await startOld();

    stopLoad.abort();
    const stats = [await oldStream, await newStream];
    expect(stats.flatMap((s) => s.failures)).toEqual([]);
    const runIds = stats.flatMap((s) => [...s.runs.values()]);
    expect(runIds.length).toBeGreaterThanOrEqual(2 * RUNS_PER_STREAM);
    const settled = await waitForRunsToEnd(sql, runIds, 120_000);
    expect(settled.open).toEqual([]);

    // Every crash hit runs in flight, or the drill proved less than it claims.
    expect(openAtKills.every((open) => open > 0)).toBe(true);
    const expected = new Map<string, RunStatus>(runIds.map((id) => [id, "COMPLETED"]));
    const checks = await checkInvariants(sql, { runs: expected });
    const failed = checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}\n  ${c.violations.join("\n  ")}`);
    expect(failed).toEqual([]);
    expect(checks.length).toBeGreaterThan(0);
    const [applied] = await sql<{ version: number }[]>`select max(version) as version from dex.schema_migrations`;
    expect(applied!.version).toBe(n + 1);
  });
});

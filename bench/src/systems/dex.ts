/**
 * dex as the bench runs it: a fresh database per scenario (cloned from a
 * template `dex migrate` migrated once), a `dex server` process exactly as an
 * operator starts it (with --metrics-port), worker processes (dex-worker.ts)
 * and a client in this process, which is the load driver.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import postgres from "postgres";
import { TaskQueueType } from "@dex/proto";
import { createClient, type Client } from "@dex/sdk";
import { freePort } from "@dex/server";
import type { BenchPostgres } from "../postgres.js";
import { repoRoot, type Proc, type ProcessGroup } from "../processes.js";
import { ACTIVITY_QUEUES, BACKLOG_QUEUE, WORKFLOW_QUEUE } from "./dex-workload.js";
import type { WorkerProcessConfig } from "./dex-worker.js";

/** The compiled `dex` bin, as an operator runs it. */
const dexCli = ["cli/bin/dex.js"];
export const TEMPLATE_DB = "dex_bench_template";

/** Migrates the template database once; every scenario's database is a copy of it. */
export async function prepareDexTemplate(pg: BenchPostgres): Promise<void> {
  const url = await pg.createDatabase(TEMPLATE_DB);
  const result = spawnSync(process.execPath, [...dexCli, "migrate", "--database-url", url], { cwd: repoRoot, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`dex migrate failed (exit ${result.status}):\n${result.stdout}${result.stderr}`);
}

/** Whether this `dex server` has --insecure-no-auth (being added with API keys): pass it only if it exists. */
function serverAuthFlags(): string[] {
  const help = spawnSync(process.execPath, [...dexCli, "server", "--help"], { cwd: repoRoot, encoding: "utf8" });
  return /--insecure-no-auth/.test(help.stdout) ? ["--insecure-no-auth"] : [];
}
let authFlags: string[] | undefined;

export interface DexEnv {
  database: string;
  sql: postgres.Sql;
  server: Proc;
  address: string;
  metricsUrl: string;
  client: Client;
  /** Starts a worker process; `countBytes` relays its connection through a byte counter. */
  startWorkers(name: string, workers: WorkerProcessConfig["workers"], countBytes?: boolean): Promise<Proc>;
  close(): Promise<void>;
}

export async function startDex(
  pg: BenchPostgres,
  group: ProcessGroup,
  scenario: string,
  options: { cpuProfDir?: string } = {},
): Promise<DexEnv> {
  const database = `dex_${scenario.replace(/-/g, "_")}`;
  await pg.dropDatabase(database);
  const url = await pg.createDatabase(database, TEMPLATE_DB);
  authFlags ??= serverAuthFlags();
  const [port, metricsPort] = [await freePort(), await freePort()];
  // --cpu-prof writes the profile when the server exits (it does on SIGTERM, gracefully).
  const profile = options.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", options.cpuProfDir, "--cpu-prof-name", `server-${scenario}.cpuprofile`] : [];
  const server = await group.spawn(
    `dex-server-${scenario}`,
    [...profile, ...dexCli, "server", "--host", "127.0.0.1", "--port", String(port), "--metrics-port", String(metricsPort), "--database-url", url, ...authFlags],
    { ready: /listening on \S+/ },
  );
  const address = `127.0.0.1:${port}`;
  const client = createClient({ address });
  const queues: Array<[string, TaskQueueType]> = [
    [WORKFLOW_QUEUE, TaskQueueType.WORKFLOW],
    [BACKLOG_QUEUE, TaskQueueType.WORKFLOW],
    ...ACTIVITY_QUEUES.map((q): [string, TaskQueueType] => [q, TaskQueueType.ACTIVITY]),
  ];
  for (const [name, type] of queues) await client.raw.queues.createTaskQueue({ name, type });
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  const workers: Proc[] = [];
  return {
    database,
    sql,
    server,
    address,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    client,
    async startWorkers(name, specs, countBytes = false) {
      const config: WorkerProcessConfig = { address, workers: specs, countBytes };
      const proc = await group.spawn(`dex-${scenario}-${name}`, [join("bench/src/systems/dex-worker.ts")], {
        env: { BENCH_WORKER: JSON.stringify(config) },
        ready: /bench worker ready/,
        ipc: true,
      });
      workers.push(proc);
      return proc;
    },
    async close() {
      client.close();
      await Promise.all(workers.map((w) => group.stop(w)));
      await group.stop(server);
      await sql.end({ timeout: 2 });
      await pg.dropDatabase(database);
    },
  };
}

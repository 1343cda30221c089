/**
 * Replay benchmark behind docs/decisions/0016-pre-deploy-replay.md: how fast
 * `dex workflow replay` checks the open runs of a server, and how much memory
 * it takes doing so.
 *
 *   node --import tsx bench/replay/run.ts [--runs 10000] [--concurrency 16] [--cpu-prof DIR]
 *
 * Setup (untimed): an embedded Postgres, a dex server, and `--runs` runs of the
 * example's orderFulfilment (examples/order-fulfilment) with a large order, so
 * each reserves stock (a no-op activity here: the example's in-memory stock
 * would run out) and then stays open waiting for a manager's approval. Then
 * the workers stop, and the compiled `dex workflow replay` runs as its own
 * process against the example's compiled workflows, once per concurrency given
 * (`--concurrency 1,4,16`). Prints runs/s and the CLI process's peak RSS
 * (getrusage maxrss, reported at exit by a preloaded module).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { createActivityWorker, createClient, createWorkflowWorker } from "@dex/sdk";
import { migrate, openDatabase, silentLogger, startEmbeddedPostgres, startServer } from "@dex/server";
import { orderFulfilment } from "../../examples/order-fulfilment/workflows.js";
import type { Order } from "../../examples/order-fulfilment/types.js";
// Plain Node, no test framework: the spawn-and-collect helper the e2e tests use.
import { repoRoot, runToEnd } from "../../tests/support/spawned.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "10000" },
    concurrency: { type: "string", default: "16" },
    "start-in-flight": { type: "string", default: "100" },
    "cpu-prof": { type: "string" },
  },
});
const RUNS = Number(values.runs);
const CONCURRENCIES = values.concurrency!.split(",").map(Number);
const START_IN_FLIGHT = Number(values["start-in-flight"]);
const quiet = { debug() {}, info() {}, warn() {}, error: console.error };
const log = (line: string) => process.stderr.write(`${line}\n`);

function bigOrder(i: number): Order {
  return {
    orderId: `bench-${i}`,
    customerEmail: "ada@example.com",
    card: "4242424242424242",
    address: "1 Analytical Engine Way",
    // Above APPROVAL_THRESHOLD_CENTS: the run waits for the "approval" event, for up to a day.
    lines: [{ sku: "teapot", quantity: 10, unitPriceCents: 6500 }],
    approvalTimeout: "24h",
  };
}

const dataDir = await mkdtemp(join(tmpdir(), "dex-bench-replay-"));
const pg = await startEmbeddedPostgres({ dataDir, ephemeral: true });
try {
  const sql = openDatabase({ url: pg.url, maxConnections: 1, applicationName: "bench migrate" });
  await migrate(sql);
  await sql.end();
  const server = await startServer({
    databaseUrl: pg.url,
    port: 0,
    ensureQueues: [
      { type: "workflow", name: "default" },
      { type: "activity", name: "default" },
    ],
    logger: silentLogger,
  });
  try {
    await setUp(server.address);
    log(`load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
    const rows: string[] = [];
    for (const concurrency of CONCURRENCIES) rows.push(await measure(server.address, concurrency));
    process.stdout.write(`\n| runs | concurrency | seconds | runs/s | peak RSS (MiB) |\n|---|---|---|---|---|\n${rows.join("\n")}\n`);
  } finally {
    await server.close();
  }
} finally {
  await pg.stop();
  await rm(dataDir, { recursive: true, force: true });
}

/** Starts RUNS runs and lets the workers bring each to its wait for approval; then stops the workers. */
async function setUp(address: string): Promise<void> {
  const client = createClient({ address });
  const workers = [
    createWorkflowWorker({ address, taskQueue: "default", workflows: { orderFulfilment }, maxConcurrentTasks: 50, logger: quiet }),
    createActivityWorker({
      address,
      taskQueue: "default",
      activities: { reserveStock: async (input: { orderId: string }) => ({ reservationId: `res-${input.orderId}` }) },
      maxConcurrentActivities: 100,
      logger: quiet,
    }),
  ];
  workers.forEach((w) => w.start());
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: START_IN_FLIGHT }, async () => {
      while (next < RUNS) {
        const i = next++;
        await client.start(orderFulfilment, { instanceId: `bench-${i}`, input: bigOrder(i) });
        if (i % 1000 === 999) log(`started ${i + 1} runs`);
      }
    }),
  );
  // Every run is at its wait once neither queue holds a task (pending or leased).
  for (;;) {
    const { queues } = await client.raw.queues.listTaskQueues({});
    const busy = queues.reduce((sum, q) => sum + Number(q.depth) + Number(q.inFlight), 0);
    if (busy === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  log(`set up ${RUNS} open runs in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  await Promise.all(workers.map((w) => w.shutdown()));
  client.close();
}

/** Times one `dex workflow replay` process over every open run. */
async function measure(address: string, concurrency: number): Promise<string> {
  const args = [
    ...(values["cpu-prof"] ? ["--cpu-prof", "--cpu-prof-dir", values["cpu-prof"]] : []),
    "--import",
    `${repoRoot}bench/replay/report-rss.mjs`,
    `${repoRoot}cli/bin/dex.js`,
    "workflow",
    "replay",
    `${repoRoot}examples/dist/order-fulfilment/workflows.js`,
    "--address",
    address,
    "--concurrency",
    String(concurrency),
    "--json",
  ];
  const started = performance.now();
  const { code, stdout, stderr } = await runToEnd(process.execPath, args, { cwd: repoRoot });
  const seconds = (performance.now() - started) / 1000;
  const report = JSON.parse(stdout) as { checked: number; replays: number; fails: number };
  if (code !== 0 || report.checked !== RUNS || report.replays !== RUNS) {
    throw new Error(`dex workflow replay exited ${code}, checked ${report.checked}, replays ${report.replays} of ${RUNS}:\n${stderr}`);
  }
  const rssKiB = Number(/maxrss_kib=(\d+)/.exec(stderr)?.[1] ?? 0);
  const line = `| ${RUNS} | ${concurrency} | ${seconds.toFixed(1)} | ${Math.round(RUNS / seconds)} | ${(rssKiB / 1024).toFixed(0)} |`;
  log(line);
  return line;
}

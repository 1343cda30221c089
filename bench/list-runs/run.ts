/**
 * `pnpm bench:list-runs`: issue 16's figure, "the runs page with 100,000 runs
 * in the database opens in under a second (keyset paging, no count(*))".
 *
 *   pnpm bench:list-runs [--runs 100000] [--calls 50] [--page-size 50] [--slow-ms 20] [--slow-sql-ms 5]
 *
 * A fresh database (the bench's embedded Postgres, bench/src/postgres.ts), a
 * `dex server` process with the web UI (--ui-port, --insecure-no-auth), runs
 * seeded in SQL (seed.ts says why and what mix), then:
 *   1. ListRuns over gRPC, first page and a deep page, p50/p99, per filter
 *      and a few combinations (measure.ts), with the statement's own
 *      execution time (EXPLAIN ANALYZE); the plan of every case slower than
 *      --slow-sql-ms in the database or --slow-ms at the RPC's p50;
 *   2. the runs page in chromium, navigation to first row, cold and warm
 *      (browser.ts);
 *   3. how long migration 0015's indexes take to build on these runs.
 * Prints Markdown tables; figures go to bench/results/list-runs.json (or --out).
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { RunStatus, TaskQueueType } from "@dex/proto";
import { createClient } from "@dex/sdk";
import { freePort } from "@dex/server";
import { startBenchPostgres, type BenchPostgres } from "../src/postgres.js";
import { ProcessGroup, repoRoot } from "../src/processes.js";
import { prepareDexTemplate, TEMPLATE_DB } from "../src/systems/dex.js";
import { measurePageLoad, type PageLoadResult } from "./browser.js";
import { explain, measureCase, type CaseResult, type FilterCase } from "./measure.js";
import { QUEUES, seedRuns, timeMigrationIndexBuilds } from "./seed.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "100000" },
    calls: { type: "string", default: "50" },
    "page-size": { type: "string", default: "50" },
    "slow-ms": { type: "string", default: "20" },
    "slow-sql-ms": { type: "string", default: "5" },
    chromium: { type: "string", default: process.env.DEX_CHROMIUM ?? "/usr/bin/chromium" },
    out: { type: "string", default: join(repoRoot, "bench/results/list-runs.json") },
  },
});
const runs = Number(values.runs);
const calls = Number(values.calls);
const pageSize = Number(values["page-size"]);
const slowMs = Number(values["slow-ms"]);
const slowSqlMs = Number(values["slow-sql-ms"]);

const began = Date.now();
const log = (line: string) => process.stdout.write(`[${((Date.now() - began) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

function cases(): FilterCase[] {
  const day = 86_400_000;
  const now = Date.now();
  const lastDay = new Date(now - day);
  const [windowStart, windowEnd] = [new Date(now - 15 * day), new Date(now - 14 * day)];
  const c = (name: string, request: FilterCase["request"], store: FilterCase["store"]): FilterCase => ({ name, request, store });
  return [
    c("no filter", {}, {}),
    c("status COMPLETED (80%)", { statuses: [RunStatus.COMPLETED] }, { statuses: ["COMPLETED"] }),
    c("status FAILED (5%)", { statuses: [RunStatus.FAILED] }, { statuses: ["FAILED"] }),
    c("status CREATED or RUNNING (10%)", { statuses: [RunStatus.CREATED, RunStatus.RUNNING] }, { statuses: ["CREATED", "RUNNING"] }),
    c("workflow orderFulfilment (40%)", { workflowName: "orderFulfilment" }, { workflowName: "orderFulfilment" }),
    c("workflow auditReport (0.5%)", { workflowName: "auditReport" }, { workflowName: "auditReport" }),
    c("queue default (60%)", { taskQueue: "default" }, { taskQueue: "default" }),
    c("queue audit (1%)", { taskQueue: "audit" }, { taskQueue: "audit" }),
    c("label tenant=t7 (2%)", { labels: { tenant: "t7" } }, { labels: { tenant: "t7" } }),
    c("label region=eu (50%)", { labels: { region: "eu" } }, { labels: { region: "eu" } }),
    c("label vip=yes (0.2%)", { labels: { vip: "yes" } }, { labels: { vip: "yes" } }),
    c("instance id", { instanceId: "run-4242" }, { instanceId: "run-4242" }),
    c("created in the last day (3%)", { createdAfter: timestampFromDate(lastDay) }, { createdAfter: lastDay }),
    c("created in a day 15 days ago (3%)", { createdAfter: timestampFromDate(windowStart), createdBefore: timestampFromDate(windowEnd) }, { createdAfter: windowStart, createdBefore: windowEnd }),
    c("workflow payment + FAILED", { workflowName: "payment", statuses: [RunStatus.FAILED] }, { workflowName: "payment", statuses: ["FAILED"] }),
    c("queue billing + FAILED", { taskQueue: "billing", statuses: [RunStatus.FAILED] }, { taskQueue: "billing", statuses: ["FAILED"] }),
    c("queue orders + day 15 days ago", { taskQueue: "orders", createdAfter: timestampFromDate(windowStart), createdBefore: timestampFromDate(windowEnd) }, { taskQueue: "orders", createdAfter: windowStart, createdBefore: windowEnd }),
    c("tenant=t7 + FAILED", { labels: { tenant: "t7" }, statuses: [RunStatus.FAILED] }, { labels: { tenant: "t7" }, statuses: ["FAILED"] }),
    c("vip=yes + queue default", { labels: { vip: "yes" }, taskQueue: "default" }, { labels: { vip: "yes" }, taskQueue: "default" }),
    c("workflow refund + region=ap + last day", { workflowName: "refund", labels: { region: "ap" }, createdAfter: timestampFromDate(lastDay) }, { workflowName: "refund", labels: { region: "ap" }, createdAfter: lastDay }),
  ];
}

const logDir = join("/tmp", `dex-bench-logs-${new Date().toISOString().replace(/[:.]/g, "-")}`);
await mkdir(logDir, { recursive: true });
const group = new ProcessGroup(logDir);
let pg: BenchPostgres | undefined;
try {
  pg = await startBenchPostgres(false, log);
  await prepareDexTemplate(pg);
  const url = await pg.createDatabase("dex_list_runs", TEMPLATE_DB);
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  const [port, uiPort] = [await freePort(), await freePort()];
  const server = await group.spawn(
    "dex-server-list-runs",
    ["cli/bin/dex.js", "server", "--host", "127.0.0.1", "--port", String(port), "--ui-port", String(uiPort), "--database-url", url, "--insecure-no-auth"],
    { ready: /dex web UI at \S+/ },
  );
  const uiUrl = `${/dex web UI at (\S+)/.exec(server.tail())![1]!}#/runs`;
  const client = createClient({ address: `127.0.0.1:${port}` });
  for (const [name] of QUEUES) await client.raw.queues.createTaskQueue({ name, type: TaskQueueType.WORKFLOW }).catch(() => undefined);

  log(`seeding ${runs} runs`);
  const seedMs = await seedRuns(sql, runs);
  log(`seeded in ${(seedMs / 1000).toFixed(1)} s (with vacuum analyze)`);

  const results: Array<CaseResult & { beforeId?: string }> = [];
  for (const c of cases()) {
    const result = await measureCase(client, sql, url, c, { calls, pageSize });
    results.push(result);
    log(`${c.name}: ${result.matching} runs; first ${result.first.p50}/${result.first.p99} ms${result.deep ? `; deep ${result.deep.p50}/${result.deep.p99} ms` : ""}`);
  }
  // The database's share of each call, and the plans of the slow ones (by SQL time, or by RPC time).
  const plans: Record<string, string> = {};
  const sqlMs: Array<{ first: number; deep?: number }> = [];
  for (const [i, c] of cases().entries()) {
    const r = results[i]!;
    const first = await explain(sql, url, { ...c.store, limit: pageSize + 1 });
    const deep = r.deep ? await explain(sql, url, { ...c.store, beforeId: r.beforeId, limit: pageSize + 1 }) : undefined;
    sqlMs.push({ first: first.executionMs, ...(deep ? { deep: deep.executionMs } : {}) });
    if (first.executionMs > slowSqlMs || r.first.p50 > slowMs) plans[`${c.name}, first page`] = first.plan;
    if (deep && r.deep && (deep.executionMs > slowSqlMs || r.deep.p50 > slowMs)) plans[`${c.name}, deep page`] = deep.plan;
  }

  let pageLoad: PageLoadResult | undefined;
  if (existsSync(values.chromium!)) {
    log(`the runs page in chromium: ${uiUrl}`);
    pageLoad = await measurePageLoad(uiUrl, { executablePath: values.chromium!, coldLoads: 10, warmLoads: 20 });
  } else log(`no chromium at ${values.chromium}: page load not measured`);

  const indexBuildMs = await timeMigrationIndexBuilds(sql);
  client.close();
  await sql.end();

  const env = { runs, calls, pageSize, cpus: cpus().length, loadavg: loadavg().map((l) => l.toFixed(2)).join(" "), logDir };
  process.stdout.write(`\n## ListRuns with ${runs.toLocaleString("en")} runs (page size ${pageSize}, ${calls} calls each, ms; load ${env.loadavg} on ${env.cpus} cores)\n\n`);
  process.stdout.write("| filter | matching runs | first page p50 | p99 | SQL | deep page p50 | p99 | SQL | deep at |\n|---|---|---|---|---|---|---|---|---|\n");
  for (const [i, r] of results.entries()) {
    const deep = r.deep ? `${r.deep.p50} | ${r.deep.p99} | ${sqlMs[i]!.deep} | ${r.deep.position}` : "- | - | - | -";
    process.stdout.write(`| ${r.name} | ${r.matching} | ${r.first.p50} | ${r.first.p99} | ${sqlMs[i]!.first} | ${deep} |\n`);
  }
  if (pageLoad) {
    process.stdout.write(`\nRuns page, navigation to first row (${pageLoad.rows} rows shown): cold p50 ${pageLoad.cold.p50} ms, p99 ${pageLoad.cold.p99} ms; warm p50 ${pageLoad.warm.p50} ms, p99 ${pageLoad.warm.p99} ms\n`);
  }
  process.stdout.write(`\nBuilding migration 0015's indexes on ${runs} runs (ms): ${JSON.stringify(indexBuildMs)}\n`);
  for (const [name, plan] of Object.entries(plans)) process.stdout.write(`\n### EXPLAIN: ${name}\n\n\`\`\`\n${plan}\n\`\`\`\n`);

  await mkdir(dirname(values.out!), { recursive: true });
  await writeFile(values.out!, `${JSON.stringify({ env, seedMs, results, sqlMs, pageLoad, indexBuildMs, plans }, null, 2)}\n`);
  log(`figures in ${values.out}`);
} finally {
  await group.close(5_000);
  await pg?.stop();
}

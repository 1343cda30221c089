/**
 * pnpm bench [--quick] [--scenario a,b] [--systems dex,dbos,pgboss] [--out PATH] [sizes...]
 *
 * Starts its own embedded Postgres (fsync on, default settings, plus
 * pg_stat_statements to count queries), then for each scenario a fresh
 * database, a `dex server` process, worker processes and this process as the
 * load driver; on the same Postgres (a database each) the same workload on
 * DBOS Transact and raw job throughput on pg-boss, each in a process of its
 * own. Prints a table (figures, ratios, targets PASS/MISS and by how much) and
 * writes every figure to a JSON file. See docs/performance.md.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { HELP, parseOptions, UsageError, type Options, type ScenarioName, type SystemName } from "./options.js";
import { startBenchPostgres, type BenchPostgres } from "./postgres.js";
import { ProcessGroup, repoRoot } from "./processes.js";
import { evaluateTargets, renderTable, type Results } from "./report.js";
import type { ScenarioContext, ScenarioResult } from "./scenario.js";
import { dbosBacklog } from "./scenarios/dbos-backlog.js";
import { dbosIdleFleet } from "./scenarios/dbos-idle-fleet.js";
import { dexBacklog } from "./scenarios/dex-backlog.js";
import { dexFanOut } from "./scenarios/dex-fan-out.js";
import { dexIdleFleet } from "./scenarios/dex-idle-fleet.js";
import { dexLatency } from "./scenarios/dex-latency.js";
import { dexLongWorkflow } from "./scenarios/dex-long-workflow.js";
import { dexThroughput } from "./scenarios/dex-throughput.js";
import { prepareDexTemplate } from "./systems/dex.js";
import { runInProcess } from "./systems/runner.js";

type Runner = (ctx: ScenarioContext) => Promise<ScenarioResult>;

/** Which system runs which scenario (pg-boss: raw job throughput only; see docs/performance.md). */
const RUNNERS: Record<ScenarioName, Partial<Record<SystemName, Runner>>> = {
  throughput: { dex: dexThroughput, dbos: (c) => runInProcess(c, "dbos", "throughput"), pgboss: (c) => runInProcess(c, "pgboss", "throughput") },
  latency: { dex: dexLatency, dbos: (c) => runInProcess(c, "dbos", "latency") },
  "long-workflow": { dex: dexLongWorkflow, dbos: (c) => runInProcess(c, "dbos", "long-workflow") },
  backlog: { dex: dexBacklog, dbos: dbosBacklog },
  "idle-fleet": { dex: dexIdleFleet, dbos: dbosIdleFleet },
  "fan-out": { dex: dexFanOut, dbos: (c) => runInProcess(c, "dbos", "fan-out") },
};

let options: Options;
try {
  const parsed = parseOptions(process.argv.slice(2));
  if (parsed === "help") {
    process.stdout.write(HELP);
    process.exit(0);
  }
  options = parsed;
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`bench: ${err.message}\n`);
  process.exit(2);
}

const began = Date.now();
const log = (message: string) => process.stdout.write(`${((Date.now() - began) / 1000).toFixed(1).padStart(6)}s  ${message}\n`);
const logDir = join("/tmp", `dex-bench-logs-${new Date().toISOString().replace(/[:.]/g, "-")}`);
await mkdir(logDir, { recursive: true });
if (options.cpuProfDir) await mkdir(resolve(options.cpuProfDir), { recursive: true });
const group = new ProcessGroup(logDir);
const loadBefore = loadavg();
let pg: BenchPostgres | undefined;
let failed = false;

// Ctrl-C: stop what we started (by pid), then Postgres.
process.once("SIGINT", () => {
  log("interrupted; stopping processes");
  void group.close(2_000).then(() => pg?.stop()).finally(() => process.exit(130));
});

try {
  log(`profile ${options.profile}: scenarios ${options.scenarios.join(", ")}; systems ${options.systems.join(", ")}; logs in ${logDir}`);
  pg = await startBenchPostgres(options.keep, log);
  const version = (await pg.admin<{ version: string }[]>`select version()`)[0]!.version;
  log(`Postgres up (${version.split(" ").slice(0, 2).join(" ")}, queries counted with ${pg.queryCounter})`);
  if (options.systems.includes("dex")) await prepareDexTemplate(pg);
  const ctx: ScenarioContext = { pg, group, sizes: options.sizes, log, cpuProfDir: options.cpuProfDir && resolve(options.cpuProfDir) };
  const results: Results = {};
  for (const scenario of options.scenarios) {
    for (const system of options.systems) {
      const runner = RUNNERS[scenario][system];
      if (!runner) continue;
      log(`${scenario} on ${system}`);
      const bySystem = (results[scenario] ??= {});
      try {
        bySystem[system] = await runner(ctx);
      } catch (err) {
        failed = true;
        const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
        log(`${scenario} on ${system} FAILED: ${message}`);
        bySystem[system] = { error: message };
      }
    }
  }
  const table = renderTable(results);
  const targets = evaluateTargets(results);
  process.stdout.write(`\n${table}\n\n`);
  const missed = targets.filter((t) => t.pass === false);
  process.stdout.write(`targets: ${targets.filter((t) => t.pass).length} PASS, ${missed.length} MISS, ${targets.filter((t) => t.pass === undefined).length} n/a\n`);
  for (const t of missed) process.stdout.write(`  MISS ${t.scenario}: ${t.target}: ${t.detail}\n`);
  const report = {
    date: new Date().toISOString(),
    durationSeconds: Math.round((Date.now() - began) / 1000),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memoryGB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      // The machine may be shared: load averages before and after tell how quiet it was.
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadavg(),
    },
    postgres: { version, queryCounter: pg.queryCounter, settings: "embedded, fsync on, defaults except max_connections=300 and pg_stat_statements preloaded" },
    options: { profile: options.profile, scenarios: options.scenarios, systems: options.systems, sizes: options.sizes },
    results,
    targets,
    table,
  };
  const out = resolve(repoRoot, options.out);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
  log(`wrote ${out}`);
} catch (err) {
  failed = true;
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\nprocess logs: ${logDir}\n`);
} finally {
  await group.close();
  await pg?.stop();
}
if (failed) process.stderr.write(`process logs kept in ${logDir}\n`);
process.exit(failed ? 1 : 0);

/**
 * `pnpm bench:retention`: the retention benchmarks of docs/performance.md
 * ("Retention"), on the bench's own Postgres (postgres.ts) and a `dex server`
 * process as the other scenarios run it (systems/dex.ts).
 *
 *   pnpm bench:retention                       # both: sweep of 1,000,000 runs, then a 10-minute soak
 *   pnpm bench:retention --only sweep --ended 100000
 *   pnpm bench:retention --only soak --minutes 12 --rate 20
 *   pnpm bench:retention --only idle       # the sweep's statements on an idle server (60 s)
 *
 * Figures go to bench/results/retention.json (or --out).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { startBenchPostgres, type BenchPostgres } from "../postgres.js";
import { ProcessGroup, repoRoot } from "../processes.js";
import { prepareDexTemplate } from "../systems/dex.js";
import { idleBench } from "./idle.js";
import { soakBench } from "./soak.js";
import { sweepBench } from "./sweep.js";

const { values } = parseArgs({
  options: {
    only: { type: "string" },
    ended: { type: "string", default: "1000000" },
    events: { type: "string", default: "8" },
    backlog: { type: "string", default: "10000" },
    rate: { type: "string", default: "20" },
    minutes: { type: "string", default: "10" },
    "idle-seconds": { type: "string", default: "60" },
    out: { type: "string", default: join(repoRoot, "bench/results/retention.json") },
  },
});

function positive(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`--${name} must be a whole number, 1 or more, got "${text}"\n`);
    process.exit(2);
  }
  return n;
}

if (values.only !== undefined && !["sweep", "soak", "idle"].includes(values.only)) {
  process.stderr.write(`--only must be "sweep", "soak" or "idle", got "${values.only}"\n`);
  process.exit(2);
}
const sizes = {
  ended: positive("ended", values.ended),
  events: positive("events", values.events),
  backlog: positive("backlog", values.backlog),
  rate: positive("rate", values.rate),
  minutes: positive("minutes", values.minutes),
  idleSeconds: positive("idle-seconds", values["idle-seconds"]),
};

const began = Date.now();
const log = (line: string) => process.stdout.write(`[${((Date.now() - began) / 1000).toFixed(0).padStart(5)} s] ${line}\n`);
const logDir = join("/tmp", `dex-bench-logs-${new Date().toISOString().replace(/[:.]/g, "-")}`);
await mkdir(logDir, { recursive: true });
const group = new ProcessGroup(logDir);
let pg: BenchPostgres | undefined;
const results: Record<string, unknown> = { sizes, logDir };
try {
  pg = await startBenchPostgres(false, log);
  await prepareDexTemplate(pg);
  log(`logs in ${logDir}`);
  const run = (what: string) => values.only === undefined || values.only === what;
  if (run("idle")) results.idle = await idleBench(pg, group, { seconds: sizes.idleSeconds }, log);
  if (run("sweep")) results.sweep = { ...(await sweepBench(pg, group, sizes, log)), seconds: (Date.now() - began) / 1000 };
  const soakBegan = Date.now();
  if (run("soak")) results.soak = { ...(await soakBench(pg, group, sizes, log)), seconds: (Date.now() - soakBegan) / 1000 };
  await mkdir(dirname(values.out!), { recursive: true });
  await writeFile(values.out!, `${JSON.stringify(results, null, 2)}\n`);
  log(`figures in ${values.out}; ${((Date.now() - began) / 60_000).toFixed(1)} min in all`);
} finally {
  await group.close(5_000);
  await pg?.stop();
}

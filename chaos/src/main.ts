/**
 * pnpm chaos [--profile ci|long] [--scenario NAME[,NAME]] [--workflows N] [--seed S]
 *            [--database-url URL] [--log-dir DIR] [--keep]
 *
 * Runs each scenario against real processes (a Postgres, `dex server`, SDK
 * worker processes, this process as load driver), then the invariant checker,
 * and prints what was done and every invariant's PASS/FAIL. Exits 1 on any
 * violation. See chaos/README.md.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { startOwnedPostgres, type OwnedPostgres } from "./postgres.js";
import { check, createScenarioDatabase, scenarioLogDir, ScenarioContext, type Scenario } from "./environment.js";
import { checkInvariants, type Check } from "./invariants.js";
import { ProcessGroup } from "./processes.js";
import { profiles, type Profile } from "./profiles.js";
import { createRng } from "./rng.js";
import { claimRace } from "./scenarios/claim-race.js";
import { instanceIdStorm } from "./scenarios/instance-id-storm.js";
import { serverKill } from "./scenarios/server-kill.js";
import { sigterm } from "./scenarios/sigterm.js";
import { workerKills } from "./scenarios/worker-kills.js";
import { postgresRestart } from "./scenarios/postgres-restart.js";
import { connectionKills } from "./scenarios/connection-kills.js";
import { threeServers } from "./scenarios/three-servers.js";
import { scheduleServers } from "./scenarios/schedule-servers.js";
import { commitFaults } from "./scenarios/commit-faults.js";
import { networkPartition } from "./scenarios/network-partition.js";
import { retention } from "./scenarios/retention.js";
import { chains } from "./scenarios/chains.js";

const scenarios: Scenario[] = [workerKills, serverKill, sigterm, instanceIdStorm, claimRace, postgresRestart, connectionKills, threeServers, scheduleServers, commitFaults, networkPartition, retention, chains];

const { values } = parseArgs({
  options: {
    profile: { type: "string", default: "ci" },
    scenario: { type: "string", multiple: true },
    workflows: { type: "string" },
    seed: { type: "string" },
    "database-url": { type: "string" },
    "log-dir": { type: "string" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});

if (values.help) {
  process.stdout.write(
    "pnpm chaos [--profile ci|long] [--scenario NAME[,NAME] ...] [--workflows N] [--seed S] [--database-url URL] [--log-dir DIR] [--keep]\n" +
      `scenarios: ${scenarios.map((s) => s.name).join(", ")}\n`,
  );
  process.exit(0);
}
const profile: Profile | undefined = profiles[values.profile as Profile["name"]];
if (!profile) fail(`--profile must be one of ${Object.keys(profiles).join(", ")}, got "${values.profile}"`);
// --scenario a --scenario b, or --scenario a,b
const names = (values.scenario ?? []).flatMap((v) => v.split(",")).filter(Boolean);
const selected = names.length ? names.map((name) => scenarios.find((s) => s.name === name) ?? fail(`unknown scenario "${name}"; known: ${scenarios.map((s) => s.name).join(", ")}`)) : scenarios;
const workflows = values.workflows === undefined ? undefined : positiveInt("--workflows", values.workflows);
const seed = values.seed === undefined ? randomBytes(4).readUInt32BE() : positiveInt("--seed", values.seed);
const logRoot = values["log-dir"] ?? join(tmpdir(), `dex-chaos-${new Date().toISOString().replace(/[:.]/g, "-")}`);

function fail(message: string): never {
  process.stderr.write(`chaos: ${message}\n`);
  process.exit(2);
}

function positiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) fail(`${flag} must be a non-negative integer, got "${text}"`);
  return n;
}

let embedded: OwnedPostgres | undefined;
let embeddedDir: string | undefined;
let currentGroup: ProcessGroup | undefined;

// Ctrl-C: no process of ours may outlive the run (each is killed by its pid).
process.on("SIGINT", () => {
  process.stdout.write("\nchaos: interrupted, stopping processes\n");
  void (currentGroup?.stopAll(0) ?? Promise.resolve())
    .then(() => embedded?.stop())
    .finally(() => process.exit(130));
});

async function adminUrl(): Promise<string> {
  const url = values["database-url"] ?? process.env.DEX_TEST_DATABASE_URL;
  if (url) return url;
  embeddedDir = join(tmpdir(), `dex-chaos-pg-${process.pid}-${randomBytes(3).toString("hex")}`);
  // Restartable (pg_ctl stop -m immediate), for the postgres-restart scenario.
  embedded = await startOwnedPostgres(embeddedDir);
  return embedded.url;
}

interface Result {
  scenario: string;
  checks: Check[];
  seconds: number;
}

async function runScenario(scenario: Scenario, admin: string): Promise<Result> {
  const began = Date.now();
  process.stdout.write(`\n== ${scenario.name}: ${scenario.summary}\n`);
  const group = (currentGroup = new ProcessGroup(await scenarioLogDir(logRoot, scenario.name)));
  let checks: Check[] = [];
  let did: string[] = [];
  const db = await createScenarioDatabase(admin, scenario.name, group);
  const sql = postgres(db.url, { max: 5, onnotice: () => {} });
  const ctx = new ScenarioContext(scenario.name, profile!, createRng(seed).fork(scenario.name), db.url, sql, group, workflows);
  ctx.postgres = embedded; // undefined with --database-url: a Postgres the suite does not own
  try {
    const outcome = await scenario.run(ctx);
    did = outcome.did;
    ctx.log("checking invariants");
    checks = [ctx.crashCheck(), ...outcome.checks, ...(await checkInvariants(sql, outcome.expect))];
  } catch (err) {
    checks = [ctx.crashCheck(), check("the scenario ran to the end", false, err instanceof Error ? (err.stack ?? err.message) : String(err))];
  } finally {
    await ctx.close();
    await sql.end({ timeout: 5 });
    if (!values.keep) await db.drop();
  }
  const seconds = (Date.now() - began) / 1000;
  process.stdout.write(`-- ${scenario.name} did (${seconds.toFixed(1)} s):\n`);
  for (const line of did) process.stdout.write(`   ${line}\n`);
  process.stdout.write(`-- invariants:\n`);
  for (const c of checks) {
    process.stdout.write(`   ${c.ok ? "PASS" : "FAIL"}  ${c.name}: ${c.detail}\n`);
    for (const v of c.violations) process.stdout.write(`         - ${v}\n`);
  }
  return { scenario: scenario.name, checks, seconds };
}

const began = Date.now();
await mkdir(logRoot, { recursive: true });
process.stdout.write(`dex chaos: profile ${profile!.name}, seed ${seed}, scenarios ${selected.map((s) => s.name).join(", ")}\n`);
process.stdout.write(`process logs: ${logRoot}\n`);
const results: Result[] = [];
try {
  const admin = await adminUrl();
  process.stdout.write(`postgres: ${embedded ? `embedded, port ${embedded.port}` : "from --database-url / DEX_TEST_DATABASE_URL"}\n`);
  for (const scenario of selected) results.push(await runScenario(scenario, admin));
} finally {
  await embedded?.stop();
  if (embeddedDir) await rm(embeddedDir, { recursive: true, force: true });
}

process.stdout.write(`\n== summary (profile ${profile!.name}, seed ${seed}, ${((Date.now() - began) / 1000).toFixed(0)} s)\n`);
for (const r of results) {
  const failed = r.checks.filter((c) => !c.ok);
  process.stdout.write(`   ${failed.length === 0 ? "PASS" : "FAIL"}  ${r.scenario.padEnd(18)} ${String(r.checks.length - failed.length).padStart(2)}/${r.checks.length} checks  ${r.seconds.toFixed(0).padStart(4)} s${failed.length ? `  failed: ${failed.map((c) => c.name).join("; ")}` : ""}\n`);
}
const ok = results.every((r) => r.checks.every((c) => c.ok));
process.stdout.write(ok ? "all invariants held\n" : `invariant violations found; rerun with --seed ${seed} --keep to inspect (logs in ${logRoot})\n`);
process.exit(ok ? 0 : 1);

/**
 * The parent side of the DBOS and pg-boss runner processes: a fresh database,
 * the process started and launched, then CPU and memory of that process and
 * of Postgres metered from "go" to its result (runInProcess). Scenarios that
 * meter another window (DBOS backlog and idle fleet) use the first two steps
 * on their own.
 */
import { Meter } from "../meter.js";
import type { Proc } from "../processes.js";
import { perSecond } from "../postgres.js";
import { figure, usageFigures, type Figure, type ScenarioContext, type ScenarioResult } from "../scenario.js";
import { round } from "../meter.js";

/** The reply a runner process sends to {type: "go"}. */
export interface RunnerReply {
  type: string;
  figures?: Figure[];
  notes?: string[];
  message?: string;
}

/** A fresh, empty database for one system and scenario: `${system}_${scenario}`. */
export async function freshDatabase(ctx: ScenarioContext, system: string, scenario: string): Promise<{ database: string; url: string }> {
  const database = `${system}_${scenario.replace(/-/g, "_")}`;
  await ctx.pg.dropDatabase(database);
  return { database, url: await ctx.pg.createDatabase(database) };
}

/** Starts a runner process (BENCH_RUNNER protocol: "runner ready", then go / result over IPC). */
export function spawnRunner(ctx: ScenarioContext, name: string, entry: string, config: { url: string; scenario: string }): Promise<Proc> {
  return ctx.group.spawn(name, [entry], {
    env: { BENCH_RUNNER: JSON.stringify({ ...config, sizes: ctx.sizes }) },
    ready: /runner ready/,
    ipc: true,
    timeoutMs: 120_000,
  });
}

export async function runInProcess(ctx: ScenarioContext, system: "dbos" | "pgboss", scenario: string): Promise<ScenarioResult> {
  const { database, url } = await freshDatabase(ctx, system, scenario);
  const entry = system === "dbos" ? "bench/src/systems/dbos-runner.ts" : "bench/src/systems/pgboss-runner.ts";
  const proc = await spawnRunner(ctx, `${system}-${scenario}`, entry, { url, scenario });
  try {
    const before = await ctx.pg.counters(database);
    const meter = new Meter([
      { name: system, pids: [proc.pid] },
      { name: "postgres", pids: [ctx.pg.postmasterPid()], tree: true },
    ]);
    const reply = await proc.request<RunnerReply>({ type: "go" }, 30 * 60_000);
    const { usage } = meter.stop();
    if (reply.type !== "result") throw new Error(`${system} ${scenario} failed: ${reply.message}`);
    const q = perSecond(before, await ctx.pg.counters(database));
    const hasUsage = scenario === "throughput";
    const count = ctx.sizes.workflows;
    const totalCpu = Object.values(usage).reduce((sum, u) => sum + u.cpuSeconds, 0);
    // pg-boss has jobs, not workflows: its per-unit figures are per 3 jobs, the activities of one workflow.
    const perWorkflow = [
      figure("cpuMsPerWorkflow", "CPU per workflow (all metered)", round((totalCpu * 1000) / count, 1), "ms"),
      figure("statementsPerWorkflow", "Postgres statements per workflow", round(q.statements / count, 1), ""),
    ];
    ctx.log(`${system} ${scenario}: ${reply.figures!.map((f) => `${f.label} ${f.value}${f.unit}`).join(", ")}`);
    return {
      figures: [
        ...reply.figures!,
        ...(hasUsage ? [...usageFigures(usage), figure("pgStatementsPerSec", "Postgres statements/s", round(q.statementsPerSec, 0), "/s"), ...perWorkflow] : []),
      ],
      usage,
      topStatements: hasUsage ? await ctx.pg.topStatements(database, 12) : undefined,
      notes: reply.notes ?? [],
    };
  } finally {
    await ctx.group.stop(proc);
    await ctx.pg.dropDatabase(database);
  }
}

/**
 * The parent side of the DBOS and pg-boss runner processes: a fresh database,
 * the process started and launched, then CPU and memory of that process and
 * of Postgres metered from "go" to its result.
 */
import { Meter } from "../meter.js";
import { perSecond } from "../postgres.js";
import { figure, usageFigures, type Figure, type ScenarioContext, type ScenarioResult } from "../scenario.js";
import { round } from "../meter.js";

export async function runInProcess(ctx: ScenarioContext, system: "dbos" | "pgboss", scenario: string): Promise<ScenarioResult> {
  const database = `${system}_${scenario.replace(/-/g, "_")}`;
  await ctx.pg.dropDatabase(database);
  const url = await ctx.pg.createDatabase(database);
  const entry = system === "dbos" ? "bench/src/systems/dbos-runner.ts" : "bench/src/systems/pgboss-runner.ts";
  const proc = await ctx.group.spawn(`${system}-${scenario}`, [entry], {
    env: { BENCH_RUNNER: JSON.stringify({ url, scenario, sizes: ctx.sizes }) },
    ready: /runner ready/,
    ipc: true,
    timeoutMs: 120_000,
  });
  try {
    const before = await ctx.pg.counters(database);
    const meter = new Meter([
      { name: system, pids: [proc.pid] },
      { name: "postgres", pids: [ctx.pg.postmasterPid()], tree: true },
    ]);
    const reply = await proc.request<{ type: string; figures?: Figure[]; notes?: string[]; message?: string }>({ type: "go" }, 30 * 60_000);
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

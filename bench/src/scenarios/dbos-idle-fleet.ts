/**
 * Scenario 5 on DBOS: the same fleet as dex-idle-fleet.ts, N workflows in one
 * DBOS process (dbos-runner.ts), half in DBOS.sleep(30 min), half in
 * DBOS.recv with a 30-minute timeout. The window opens once every run has
 * recorded its wait (both record a DBOS.sleep row in operation_outputs: the
 * sleep's wake-up time, the recv's deadline) and is measured as dex's: CPU of
 * the DBOS process and of Postgres, statements on the DBOS database, and the
 * DBOS process's resident memory at the end.
 *
 * A waiting DBOS.recv checks the database every 10 s (DBOS's default for
 * messages) besides listening for a NOTIFY, so a window shorter than that
 * misses or doubles those checks: a note says so when --idle-seconds is < 10.
 */
import { setTimeout as sleep } from "node:timers/promises";
import postgres from "postgres";
import { idleFleetFigures } from "../comparable-figures.js";
import { Meter } from "../meter.js";
import { perSecond } from "../postgres.js";
import { memoryBytes } from "../proc.js";
import { usageFigures, type ScenarioContext, type ScenarioResult } from "../scenario.js";
import { waitFor } from "../stats.js";
import { DBOS_SCHEMA } from "../systems/dbos-app.js";
import { freshDatabase, spawnRunner, type RunnerReply } from "../systems/runner.js";

/** DBOS.recv's database check interval (dbPollingIntervalEventMs in its system_database.js). */
const RECV_POLL_SECONDS = 10;

export async function dbosIdleFleet(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { idleRuns: runs, idleSeconds } = ctx.sizes;
  const { database, url } = await freshDatabase(ctx, "dbos", "idle-fleet");
  // DBOS.launch in the runner creates its system tables; read them only after it is ready.
  const proc = await spawnRunner(ctx, "dbos-idle-fleet", "bench/src/systems/dbos-runner.ts", { url, scenario: "idle-fleet" });
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  try {
    const t0 = performance.now();
    const reply = await proc.request<RunnerReply>({ type: "go" }, 10 * 60_000);
    if (reply.type !== "result") throw new Error(`DBOS idle fleet failed: ${reply.message}`);
    await waitFor(`${runs} DBOS workflows to park`, 10 * 60_000, async () => {
      const [row] = await sql<{ parked: number; pending: number }[]>`
        select (select count(distinct workflow_uuid)::int from ${sql(DBOS_SCHEMA)}.operation_outputs where function_name = 'DBOS.sleep') as parked,
               (select count(*)::int from ${sql(DBOS_SCHEMA)}.workflow_status where name = 'idleWorkflow' and status = 'PENDING') as pending`;
      return row!.parked === runs && row!.pending === runs ? true : undefined;
    }, 500);
    ctx.log(`dbos idle fleet: ${runs} workflows parked in ${((performance.now() - t0) / 1000).toFixed(1)} s; measuring ${idleSeconds} s of idle`);
    const before = await ctx.pg.counters(database);
    const meter = new Meter([
      { name: "dbos", pids: [proc.pid] },
      { name: "postgres", pids: [ctx.pg.postmasterPid()], tree: true },
    ]);
    await sleep(idleSeconds * 1000); // the idle window being measured
    const { seconds, usage } = meter.stop();
    const q = perSecond(before, await ctx.pg.counters(database));
    const rssMB = memoryBytes(proc.pid, false) / 2 ** 20;
    return {
      figures: [
        ...idleFleetFigures(seconds, { engine: usage.dbos!.cpuSeconds, postgres: usage.postgres!.cpuSeconds }, q.statementsPerSec, rssMB),
        ...usageFigures(usage),
      ],
      usage,
      topStatements: await ctx.pg.topStatements(database, 10),
      notes: [
        ...(reply.notes ?? []),
        `${runs} waiting workflows (half DBOS.sleep, half DBOS.recv, 30 min each) in one DBOS process, ${seconds.toFixed(1)} s window; statements counted by ${ctx.pg.queryCounter} on the DBOS database only`,
        ...(idleSeconds < RECV_POLL_SECONDS
          ? [`the window is shorter than DBOS.recv's ${RECV_POLL_SECONDS} s database check: statements/s may miss or double count those checks`]
          : []),
      ],
    };
  } finally {
    await ctx.group.stop(proc);
    await sql.end({ timeout: 2 });
    await ctx.pg.dropDatabase(database);
  }
}

/**
 * Postgres itself crashes under load: `pg_ctl stop -m immediate` (every
 * backend killed, no checkpoint; the next start replays the WAL), a random
 * pause, then the same cluster started again on the same port. The dex
 * server, the SDK workers and the load driver must ride it out on their own.
 * Beside the SDK activity worker, raw pollers in this process serve the same
 * queue and remember every completion the server acknowledged: each must be
 * in history afterwards (an acknowledgement is a promise that survives a
 * crash of the database).
 *
 * It needs the suite's own Postgres: with --database-url it is skipped.
 */
import { writeFile, appendFile } from "node:fs/promises";
import { join } from "node:path";
import { check, type Scenario, type ScenarioContext } from "../environment.js";
import type { ServerSlot } from "../processes.js";
import { AckedPollers } from "./acked-pollers.js";
import { leasedNow, pause, settle, snapshotSessions, startCluster, startOrders } from "./common.js";

export const postgresRestart: Scenario = {
  name: "postgres-restart",
  summary: "stop Postgres with -m immediate under load and start it again, several times; acknowledged completions survive",
  async run(ctx) {
    const pg = ctx.postgres;
    if (!pg) {
      const why = "skipped: the Postgres is from --database-url / DEX_TEST_DATABASE_URL, which this suite cannot restart";
      ctx.log(why);
      return { did: [why], expect: { runs: new Map() }, checks: [] };
    }
    const p = ctx.profile.postgresRestart;
    const n = ctx.workflows(p.workflows);
    const cluster = await startCluster(ctx, { workflow: p.workflowWorkers, activity: p.activityWorkers });
    const pollers = new AckedPollers(ctx);
    pollers.start([cluster.server.address], p.rawPollers);
    const starting = startOrders(ctx, cluster.client, "pr", n, p.spreadMs);
    ctx.log(`starting ${n} workflows over ${p.spreadMs / 1000} s; ${p.rawPollers} raw pollers beside the SDK workers; ${p.restarts} immediate Postgres stops planned`);

    // The restarted cluster's output (crash recovery) goes to postgres.log in the scenario's log dir.
    const pgLog = join(ctx.group.logDir, "postgres.log");
    await writeFile(pgLog, "");
    const did: string[] = [];
    let downTotal = 0;
    const readyTimes: number[] = [];
    for (let k = 0; k < p.restarts; k++) {
      await pause(ctx.rng.int(...p.gapMs));
      const leased = await leasedNow(ctx);
      const acked = pollers.acked.length;
      const stopAt = Date.now();
      await pg.stopImmediately();
      const stopMs = Date.now() - stopAt;
      const down = ctx.rng.int(...p.downMs);
      await pause(down);
      await appendFile(pgLog, `\n=== ${new Date().toISOString()} start after immediate stop ${k + 1}\n`);
      await pg.startAgain((text) => void appendFile(pgLog, text));
      const outage = Date.now() - stopAt;
      readyTimes.push(Date.now());
      downTotal += outage;
      const line = `stop ${k + 1}: ${leased.workflow} workflow / ${leased.activity} activity tasks leased, ${acked} completions acknowledged so far; pg_ctl stop -m immediate took ${stopMs} ms; down ${down} ms more; accepting connections again after ${outage} ms`;
      ctx.log(line);
      did.push(line);
    }
    const stats = await starting;
    const settled = await settle(ctx, stats);
    await pollers.stop();
    // How long the system took to complete work again after each restart (the raw pollers' first acknowledgement).
    const recovery = readyTimes.map((t, i) => `${i + 1}: ${pollers.firstAckAfter(t) ?? "none"} ms`).join(", ");
    const shutdown = await gracefulStop(ctx, cluster.server);
    return {
      did: [`${stats.runs.size} workflows started`, `${p.restarts} immediate Postgres stops, ${(downTotal / 1000).toFixed(1)} s without a database in total`, ...did, `first acknowledged completion after each restart: ${recovery}`, pollers.summary(), settled.line, shutdown.line],
      expect: { runs: settled.runs },
      checks: [...settled.checks, await pollers.check(), shutdown.check],
    };
  },
};

/**
 * The server that lived through the restarts gets SIGTERM at the end: it must
 * still shut down gracefully (exit 0 within its 10 s grace). Its pool holds
 * connections made across the restarts; one left waiting for an answer that
 * never comes would hold the shutdown up. If it is still running after 3 s,
 * what its sessions wait on is recorded; after 15 s it is SIGKILLed.
 */
async function gracefulStop(ctx: ScenarioContext, server: ServerSlot): Promise<{ line: string; check: ReturnType<typeof check> }> {
  const proc = server.current;
  const stopping = server.stop("SIGTERM");
  let sessions = "";
  if (!(await Promise.race([stopping.then(() => true), pause(3_000).then(() => false)]))) {
    sessions = await snapshotSessions(ctx, "sessions-sigterm.jsonl");
    ctx.log(`server still running 3 s after SIGTERM; ${sessions}`);
  }
  const killer = setTimeout(() => proc?.child.kill("SIGKILL"), 15_000);
  const exit = await stopping;
  clearTimeout(killer);
  const line = `SIGTERM at the end: exit code ${exit.code} (signal ${exit.signal}) after ${exit.ms} ms${sessions ? `; at 3 s: ${sessions}` : ""}`;
  ctx.log(line);
  return { line, check: check("after the restarts, the server still shuts down gracefully (exit 0 within its 10 s grace)", exit.code === 0 && exit.ms <= 10_000, line) };
}

/**
 * Worker processes SIGKILLed at random moments (seeded) while workflows with
 * three activities and a timer run, each restarted after a random pause. A
 * killed activity worker's attempts come back after their 4 s lease; a killed
 * workflow worker's tasks after the 10 s workflow-task lease. A colocated
 * process (workflow and activity worker together) takes its runs' activities
 * eagerly, in its completions' answers: killing it loses eagerly leased
 * attempts, which must come back after their lease like polled ones.
 */
import { freePort } from "@dex/server";
import { check, type Scenario } from "../environment.js";
import { leasedNow, pause, settle, startCluster, startOrders } from "./common.js";

export const workerKills: Scenario = {
  name: "worker-kills",
  summary: "SIGKILL workflow and activity worker processes at random moments under load, restart them",
  async run(ctx) {
    const p = ctx.profile.workerKills;
    const n = ctx.workflows(p.workflows);
    const metricsPort = await freePort();
    const cluster = await startCluster(
      ctx,
      { workflow: p.workflowWorkers, activity: p.activityWorkers, colocated: p.colocatedWorkers },
      { env: { DEX_METRICS_PORT: String(metricsPort) } },
    );
    const slots = [...cluster.workflowWorkers, ...cluster.activityWorkers, ...cluster.colocatedWorkers];
    const starting = startOrders(ctx, cluster.client, "wk", n, p.spreadMs);
    let allStarted = false;
    void starting.then(() => (allStarted = true));
    ctx.log(`starting ${n} workflows over ${p.spreadMs / 1000} s; ${p.kills} kills planned`);

    const kills = { workflow: 0, activity: 0, colocated: 0 };
    let inFlightAtKills = 0;
    for (let k = 0; k < p.kills; k++) {
      await pause(ctx.rng.int(...p.killGapMs));
      // Once every run has ended there is nothing left to interrupt.
      if (allStarted && (await openRuns(ctx)) === 0) break;
      const slot = ctx.rng.pick(slots);
      const leased = await leasedNow(ctx);
      inFlightAtKills += leased.workflow + leased.activity;
      await slot.stop("SIGKILL");
      kills[slot.config.kind]++;
      ctx.log(`SIGKILL ${slot.name} (${leased.workflow} workflow / ${leased.activity} activity tasks leased cluster-wide)`);
      await pause(ctx.rng.int(...p.restartDelayMs));
      await slot.start();
    }
    const stats = await starting;
    const settled = await settle(ctx, stats);
    const eager = await eagerActivityTasks(metricsPort);
    const checks = [...settled.checks];
    if (p.colocatedWorkers > 0) {
      // Without this the scenario would pass with eager dispatch silently off, proving nothing about it.
      checks.push(check("the colocated workers took activity tasks eagerly", eager > 0, `${eager} activity tasks dispatched eagerly (server metric)`));
    }
    return {
      did: [
        `${stats.runs.size} workflows started (3 activities + a timer each)`,
        `${kills.workflow + kills.activity + kills.colocated} SIGKILLs: ${kills.workflow} workflow worker, ${kills.activity} activity worker, ${kills.colocated} colocated (${inFlightAtKills} tasks leased at kill times)`,
        `${eager} activity tasks dispatched eagerly to colocated workers`,
        settled.line,
      ],
      expect: { runs: settled.runs },
      checks,
    };
  },
};

async function openRuns(ctx: Parameters<Scenario["run"]>[0]): Promise<number> {
  const [row] = await ctx.sql<{ n: number }[]>`select count(*)::int as n from dex.runs where status in ('CREATED', 'RUNNING')`;
  return row!.n;
}

/** dex_tasks_dispatched_eagerly_total{type="activity"} summed over queues, from the server's metrics endpoint. */
async function eagerActivityTasks(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    const m = /^dex_tasks_dispatched_eagerly_total\{([^}]*)\} (\S+)$/.exec(line);
    if (m && /type="activity"/.test(m[1]!)) total += Number(m[2]);
  }
  return total;
}

/**
 * Worker processes SIGKILLed at random moments (seeded) while workflows with
 * three activities and a timer run, each restarted after a random pause. A
 * killed activity worker's attempts come back after their 4 s lease; a killed
 * workflow worker's tasks after the 10 s workflow-task lease.
 */
import type { Scenario } from "../environment.js";
import { leasedNow, pause, settle, startCluster, startOrders } from "./common.js";

export const workerKills: Scenario = {
  name: "worker-kills",
  summary: "SIGKILL workflow and activity worker processes at random moments under load, restart them",
  async run(ctx) {
    const p = ctx.profile.workerKills;
    const n = ctx.workflows(p.workflows);
    const cluster = await startCluster(ctx, { workflow: p.workflowWorkers, activity: p.activityWorkers });
    const slots = [...cluster.workflowWorkers, ...cluster.activityWorkers];
    const starting = startOrders(ctx, cluster.client, "wk", n, p.spreadMs);
    let allStarted = false;
    void starting.then(() => (allStarted = true));
    ctx.log(`starting ${n} workflows over ${p.spreadMs / 1000} s; ${p.kills} kills planned`);

    const kills = { workflow: 0, activity: 0 };
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
    return {
      did: [
        `${stats.runs.size} workflows started (3 activities + a timer each)`,
        `${kills.workflow + kills.activity} SIGKILLs: ${kills.workflow} workflow worker, ${kills.activity} activity worker (${inFlightAtKills} tasks leased at kill times)`,
        settled.line,
      ],
      expect: { runs: settled.runs },
      checks: settled.checks,
    };
  },
};

async function openRuns(ctx: Parameters<Scenario["run"]>[0]): Promise<number> {
  const [row] = await ctx.sql<{ n: number }[]>`select count(*)::int as n from dex.runs where status in ('CREATED', 'RUNNING')`;
  return row!.n;
}

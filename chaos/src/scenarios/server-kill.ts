/**
 * The server SIGKILLed under load, while worker polls are parked and
 * completions are in flight, then started again on the same port: workers
 * reconnect on their own, the load driver retries its starts (same request
 * id). Raw polls parked on an idle queue show what a crash does to a parked
 * poll: it must end with an error at once, not hang until its deadline.
 */
import { check, type Scenario } from "../environment.js";
import { leasedNow, parkPolls, pause, settle, startCluster, startOrders } from "./common.js";

export const serverKill: Scenario = {
  name: "server-kill",
  summary: "SIGKILL the server with polls parked and completions in flight, restart it on the same port",
  async run(ctx) {
    const p = ctx.profile.serverKill;
    const n = ctx.workflows(p.workflows);
    const cluster = await startCluster(ctx, { workflow: 1, activity: 1 });
    const starting = startOrders(ctx, cluster.client, "sk", n, p.spreadMs);
    ctx.log(`starting ${n} workflows over ${p.spreadMs / 1000} s; ${p.kills} server kills planned`);

    const did: string[] = [];
    const parkedViolations: string[] = [];
    let parkedTotal = 0;
    let downTotal = 0;
    for (let k = 0; k < p.kills; k++) {
      await pause(ctx.rng.int(...p.killGapMs));
      const parked = parkPolls(cluster.client, 4, `kill${k}`);
      parkedTotal += parked.length;
      await pause(300); // let them park
      const leased = await leasedNow(ctx);
      const killedAt = Date.now();
      await cluster.server.stop("SIGKILL");
      const down = ctx.rng.int(...p.downMs);
      ctx.log(`SIGKILL server (${leased.workflow} workflow / ${leased.activity} activity tasks leased); restarting in ${down} ms`);
      did.push(`kill ${k + 1}: ${leased.workflow} workflow and ${leased.activity} activity tasks leased, 4 polls parked; down ${down} ms`);
      for (const poll of parked) {
        const ended = await Promise.race([poll.ended, pause(5_000).then(() => undefined)]);
        if (!ended) parkedViolations.push(`kill ${k + 1}: a parked poll had no answer 5 s after the kill`);
        else if (ended.outcome === "empty") parkedViolations.push(`kill ${k + 1}: a parked poll answered empty from a SIGKILLed server?`);
        else if (ended.at - killedAt > 2_000) parkedViolations.push(`kill ${k + 1}: a parked poll ended ${ended.at - killedAt} ms after the kill (${ended.outcome})`);
      }
      await pause(down);
      const restartAt = Date.now();
      await cluster.server.start();
      downTotal += Date.now() - killedAt;
      ctx.log(`server back after ${Date.now() - killedAt} ms (start took ${Date.now() - restartAt} ms)`);
    }
    const stats = await starting;
    const settled = await settle(ctx, stats);
    return {
      did: [`${stats.runs.size} workflows started`, `${p.kills} server SIGKILLs, ${(downTotal / 1000).toFixed(1)} s down in total`, ...did, settled.line],
      expect: { runs: settled.runs },
      checks: [
        ...settled.checks,
        check("parked polls end at once when the server dies (no hang until the deadline)", parkedViolations.length === 0, `${parkedTotal} parked polls`, parkedViolations),
      ],
    };
  },
};

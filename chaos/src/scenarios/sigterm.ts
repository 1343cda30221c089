/**
 * SIGTERM to the server under load: a graceful exit (code 0, within the
 * 10 s grace), parked polls answered empty at once, then a server started
 * again on the same port continues the runs. Nothing may wait out a lease:
 * a task the stopping server handed out must reach its worker, and a task
 * it took back must be available at once, so no activity runs a second
 * attempt and no workflow task needs one (activities here never fail).
 */
import { fromBinary } from "@bufbuild/protobuf";
import { HistoryEventSchema } from "@dex/proto";
import { check, type Scenario, type ScenarioContext } from "../environment.js";
import { leasedNow, parkPolls, pause, settle, snapshotSessions, startCluster, startOrders } from "./common.js";

export const sigterm: Scenario = {
  name: "sigterm",
  summary: "SIGTERM the server under load: graceful exit, parked polls answered, restart continues, no lease waited out",
  async run(ctx) {
    const p = ctx.profile.sigterm;
    const n = ctx.workflows(p.workflows);
    const cluster = await startCluster(ctx, { workflow: 1, activity: 1 });
    // Activity leases of 30 s: longer than any restart here, so a second attempt means the
    // server lost a task, not that the worker's retries ran out while it was away.
    const starting = startOrders(ctx, cluster.client, "st", n, p.spreadMs, 30_000);
    ctx.log(`starting ${n} workflows over ${p.spreadMs / 1000} s; ${p.cycles} SIGTERMs planned`);

    const did: string[] = [];
    const exitViolations: string[] = [];
    const pollViolations: string[] = [];
    let parkedTotal = 0;
    for (let k = 0; k < p.cycles; k++) {
      await pause(ctx.rng.int(...p.gapMs));
      const parked = parkPolls(cluster.client, 4, `term${k}`);
      parkedTotal += parked.length;
      await pause(300);
      const leased = await leasedNow(ctx);
      const termAt = Date.now();
      const stopping = cluster.server.stop("SIGTERM");
      // A server still running 3 s after SIGTERM is stuck somewhere: record what its sessions wait on.
      if (!(await Promise.race([stopping.then(() => true), pause(3_000).then(() => false)]))) {
        ctx.log(`SIGTERM ${k + 1}: still running after 3 s; ${await snapshotSessions(ctx, `sessions-sigterm-${k + 1}.jsonl`)}`);
      }
      const exit = await stopping;
      if (exit.code !== 0) exitViolations.push(`SIGTERM ${k + 1}: exit code ${exit.code} (signal ${exit.signal})`);
      if (exit.ms > 10_000) exitViolations.push(`SIGTERM ${k + 1}: took ${exit.ms} ms to exit`);
      const answers = await Promise.all(parked.map((poll) => poll.ended));
      for (const a of answers) {
        if (a.outcome !== "empty") pollViolations.push(`SIGTERM ${k + 1}: a parked poll ended with ${a.outcome}, not an empty answer`);
        else if (a.at - termAt > 2_000) pollViolations.push(`SIGTERM ${k + 1}: a parked poll was answered ${a.at - termAt} ms after SIGTERM`);
      }
      const slowest = Math.max(...answers.map((a) => a.at - termAt));
      const down = ctx.rng.int(...p.downMs);
      await pause(down);
      await cluster.server.start();
      const line = `SIGTERM ${k + 1}: ${leased.workflow} workflow / ${leased.activity} activity tasks leased; exit ${exit.code} after ${exit.ms} ms; parked polls answered within ${slowest} ms; down ${down} ms more; serving again after ${Date.now() - termAt} ms`;
      ctx.log(line);
      did.push(line);
    }
    const stats = await starting;
    const settled = await settle(ctx, stats);
    const retried = await secondAttempts(ctx);
    const activities = retried.filter((r) => r.startsWith("activity"));
    const workflowTasks = retried.filter((r) => !r.startsWith("activity"));
    return {
      did: [`${stats.runs.size} workflows started`, ...did, settled.line],
      expect: { runs: settled.runs },
      checks: [
        ...settled.checks,
        check("SIGTERM: the server exits 0 within its 10 s grace", exitViolations.length === 0, `${p.cycles} SIGTERMs`, exitViolations),
        check("SIGTERM: parked polls are answered empty at once", pollViolations.length === 0, `${parkedTotal} parked polls`, pollViolations),
        check("SIGTERM: no activity waits out its lease (no attempt 2)", activities.length === 0, `${activities.length} activities ran a second attempt`, activities),
        // The workflow-task lease is the server's fixed 10 s; the worker retries a completion for ~1 s.
        check("SIGTERM: no workflow task waits out its lease (no attempt 2)", workflowTasks.length === 0, `${workflowTasks.length} workflow tasks completed on a later attempt`, workflowTasks),
      ],
    };
  },
};

/** Activity executions and workflow-task completions of attempt 2 or more: each waited out a lease (or failed). */
async function secondAttempts(ctx: ScenarioContext): Promise<string[]> {
  const found: string[] = [];
  const activities = await ctx.sql<{ run_id: string; seq: number; attempt: number; started_at: Date }[]>`
    select run_id, seq, attempt, started_at from chaos.executions where attempt > 1 order by started_at`;
  for (const a of activities) found.push(`activity run ${a.run_id} seq ${a.seq}: attempt ${a.attempt} started ${a.started_at.toISOString()}`);
  const markers = await ctx.sql<{ run_id: string; sequence: number; event: Buffer; created_at: Date }[]>`
    select run_id, sequence, event, created_at from dex.history_events where kind = 'workflow_task_completed' order by created_at`;
  for (const m of markers) {
    const attributes = fromBinary(HistoryEventSchema, m.event).attributes;
    if (attributes.case === "workflowTaskCompleted" && attributes.value.attempt > 1) {
      found.push(`workflow task of run ${m.run_id} (event ${m.sequence}) completed on attempt ${attributes.value.attempt} at ${m.created_at.toISOString()}`);
    }
  }
  return found;
}

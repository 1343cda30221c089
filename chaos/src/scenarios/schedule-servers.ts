/**
 * A schedule on three servers: a 1-second schedule (ALLOW_ALL, a fixed window
 * of nominal seconds) fired by three `dex server` processes on one database,
 * while servers are SIGKILLed and started again in between (never all at
 * once, so no firing is ever late enough to be skipped).
 *
 * Checked from the database: exactly one run per nominal second of the
 * window, none twice, none missing, each with the instance id
 * `<schedule>-<nominal time>`, none skipped (the schedule's counters), and
 * every run completed (the invariant checker holds them to COMPLETED).
 */
import { TaskQueueType } from "@dex/proto";
import { check, type Scenario } from "../environment.js";
import { pause, settle } from "./common.js";

const SCHEDULE_ID = "every-second";

export const scheduleServers: Scenario = {
  name: "schedule-servers",
  summary: "a 1-second schedule fired by three servers while servers are SIGKILLed and restarted; one run per nominal second",
  async run(ctx) {
    const p = ctx.profile.scheduleServers;
    const servers = [await ctx.startServer(), await ctx.startServer(), await ctx.startServer()];
    const client = ctx.client(servers[0]!.address);
    await client.raw.queues.createTaskQueue({ name: "default", type: TaskQueueType.WORKFLOW });
    const workers = servers.map((s, i) => ctx.worker(`workflow-worker-${i + 1}`, { kind: "workflow", address: s.address, taskQueue: "default", concurrency: 10 }));
    await Promise.all(workers.map((w) => w.start()));

    // The window starts a few seconds out, on the database's clock, whole seconds.
    const { nowMs } = (await ctx.sql<{ nowMs: number }[]>`select (extract(epoch from now()) * 1000)::float8 as "nowMs"`)[0]!;
    const firstS = Math.ceil(nowMs / 1000) + 3;
    const lastS = firstS + p.seconds - 1;
    await client.schedule.create({
      scheduleId: SCHEDULE_ID,
      spec: { intervals: [{ everyMs: 1_000 }], startAt: new Date(firstS * 1000), endAt: new Date(lastS * 1000) },
      action: { workflow: "stormWorkflow", taskQueue: "default", input: { holdMs: 100 } },
      overlap: "allow-all",
    });
    ctx.log(`schedule ${SCHEDULE_ID}: every second for ${p.seconds} s (nominal ${new Date(firstS * 1000).toISOString()} .. ${new Date(lastS * 1000).toISOString()}), 3 servers, a workflow worker on each`);

    const did: string[] = [];
    const windowEnd = lastS * 1000;
    for (let k = 0; k < p.kills; k++) {
      await pause(ctx.rng.int(...p.gapMs));
      if (Date.now() > windowEnd - 2_000) break;
      const server = ctx.rng.pick(servers);
      const killed = Date.now();
      await server.stop("SIGKILL");
      await pause(ctx.rng.int(...p.downMs));
      await server.start();
      const line = `SIGKILL ${server.name} at nominal second ${Math.round((killed - firstS * 1000) / 1000)}, serving again after ${Date.now() - killed} ms`;
      ctx.log(line);
      did.push(line);
    }

    // Done when the schedule has nothing left to fire (its due time is cleared after the last second).
    const deadline = Date.now() + p.seconds * 1000 + ctx.profile.settleTimeoutMs;
    for (;;) {
      const [row] = await ctx.sql<{ due: Date | null }[]>`select due_at as due from dex.schedules where id = ${SCHEDULE_ID}`;
      if (row && row.due === null) break;
      if (Date.now() > deadline) break;
      await pause(250);
    }

    const runs = await ctx.sql<{ id: string; instance_id: string }[]>`
      select id, instance_id from dex.runs where instance_id like ${`${SCHEDULE_ID}-%`} order by instance_id`;
    const [counters] = await ctx.sql<{ actions: number; skipped: number; due: Date | null }[]>`
      select action_count::int as actions, (overlap_skipped + paused_skipped + catchup_window_missed)::int as skipped, due_at as due
      from dex.schedules where id = ${SCHEDULE_ID}`;
    const expected = Array.from({ length: p.seconds }, (_, i) => `${SCHEDULE_ID}-${new Date((firstS + i) * 1000).toISOString()}`);
    const byInstance = new Map<string, number>();
    for (const r of runs) byInstance.set(r.instance_id, (byInstance.get(r.instance_id) ?? 0) + 1);
    const twice = [...byInstance].filter(([, n]) => n > 1).map(([instance, n]) => `${instance}: ${n} runs`);
    const missing = expected.filter((instance) => !byInstance.has(instance)).map((instance) => `${instance}: no run`);
    const stray = [...byInstance.keys()].filter((instance) => !expected.includes(instance)).map((instance) => `${instance}: outside the window`);
    const line = `${runs.length} runs for ${p.seconds} nominal seconds; ${counters?.actions ?? 0} actions, ${counters?.skipped ?? 0} skipped by the schedule`;
    ctx.log(line);

    const stats = { runs: new Map(runs.map((r) => [r.instance_id, r.id])), retries: 0, failures: [] };
    const settled = await settle(ctx, stats);
    return {
      did: [`schedule ${SCHEDULE_ID} every second for ${p.seconds} s on 3 servers`, ...did, line, settled.line],
      expect: { runs: settled.runs },
      checks: [
        check(
          "each nominal second of the schedule started exactly one run, none twice, none missing",
          twice.length === 0 && missing.length === 0 && stray.length === 0 && counters?.due === null,
          line,
          [...twice, ...missing, ...stray, ...(counters?.due === null ? [] : ["the schedule still has firings due after the window"])],
        ),
        check(
          "the schedule counted every run it started and skipped nothing",
          counters?.actions === p.seconds && counters.skipped === 0,
          line,
          counters?.actions === p.seconds && counters.skipped === 0 ? [] : [line],
        ),
      ],
    };
  },
};

/**
 * Several servers, one database: three `dex server` processes, each worker
 * connected to one of them, under the chaos load and faults (worker kills,
 * one server at a time SIGKILLed and started again).
 *
 * - Starts go to server-1 only, while the default workflow queue's workers
 *   are on servers 2 and 3: every run's first task is enqueued by one server
 *   and handed out by another. Wake probes (wake-probes.ts), sent in the quiet
 *   moments between faults, check that every hand-over arrives and report how
 *   long it took. They assert no speed: on a loaded machine any bound flakes
 *   (issue 11). That a cross-server wake, not the fallback tick, answers the
 *   poll is proven in server/test (long-poll, queue-servers) with the tick
 *   off; how fast it is, by the benchmark (bench/).
 * - The default activity queue has a capacity, and activity workers on all
 *   three servers ask for more than it allows: the executions recorded with
 *   their ends must never overlap more than the capacity (capacity.ts).
 * - Timers are fired by whichever server's timer loop gets there first: the
 *   checker's "no timer fired early or twice" covers them.
 * - A few runs of a workflow no worker knows carry a 2 s run timeout: their
 *   tasks fail on every attempt until the timeout, fired by whichever server
 *   gets there first, ends them TIMED_OUT (checked: expected status, and the
 *   checker's "each run timeout ends its run once").
 */
import { TaskQueueType } from "@dex/proto";
import { check, type Scenario } from "../environment.js";
import type { WorkerSlot } from "../processes.js";
import { startRequest, startRuns, type OrderInput } from "../workload.js";
import { capacityCheck } from "./capacity.js";
import { leasedNow, pause, settle } from "./common.js";
import { percentile, PROBE_QUEUE, WakeProbes } from "./wake-probes.js";

const LEASE_MS = 4_000;
/** Runs started with a run timeout that no worker can run. */
const TIMING_OUT_RUNS = 8;

export const threeServers: Scenario = {
  name: "three-servers",
  summary: "three servers on one database, workers spread across them, worker and server kills; cross-server wakes, capacity, timers",
  async run(ctx) {
    const p = ctx.profile.threeServers;
    const n = ctx.workflows(p.workflows);
    const servers = [await ctx.startServer(), await ctx.startServer(), await ctx.startServer()];
    const [s1, s2, s3] = servers as [typeof servers[0], typeof servers[0], typeof servers[0]];
    const client = ctx.client(s1.address);
    const queues = client.raw.queues;
    await queues.createTaskQueue({ name: "default", type: TaskQueueType.WORKFLOW });
    await queues.createTaskQueue({ name: "default", type: TaskQueueType.ACTIVITY, capacity: p.capacity });
    await queues.createTaskQueue({ name: PROBE_QUEUE, type: TaskQueueType.WORKFLOW });
    const workflowWorkers = [s2, s3].map((s, i) => ctx.worker(`workflow-worker-${i + 2}`, { kind: "workflow", address: s.address, taskQueue: "default", concurrency: 10 }));
    const activityWorkers = servers.map((s, i) =>
      ctx.worker(`activity-worker-${i + 1}`, { kind: "activity", address: s.address, taskQueue: "default", concurrency: p.activityConcurrency }),
    );
    const workers: WorkerSlot[] = [...workflowWorkers, ...activityWorkers];
    await Promise.all(workers.map((w) => w.start()));
    const probes = new WakeProbes(ctx, client);
    probes.start([s2, s3]);
    ctx.log(
      `3 servers; workflow workers on server-2 and server-3 only, starts through server-1; activity workers (${p.activityConcurrency} slots each) on all three, queue capacity ${p.capacity}; wake probes parked on server-2 and server-3`,
    );

    const requests = Array.from({ length: n }, (_, i) =>
      startRequest("chaosOrder", `ts-${i}`, { timerMs: ctx.rng.int(50, 1_500), delayMs: p.activityDelayMs, leaseMs: LEASE_MS, recordEnd: true } satisfies OrderInput),
    );
    const timingOut: string[] = [];
    for (let i = 0; i < TIMING_OUT_RUNS; i++) {
      const handle = await client.start("chaosNoWorkerKnowsThis", { instanceId: `ts-timeout-${i}`, runTimeout: "2s" });
      timingOut.push(handle.runId!);
    }
    const starting = startRuns(client, requests, { concurrency: 16, spreadMs: p.spreadMs, deadline: Date.now() + p.spreadMs + 120_000 });
    let allStarted = false;
    void starting.then(() => (allStarted = true));
    ctx.log(`starting ${n} workflows over ${p.spreadMs / 1000} s; up to ${p.faults} faults, ${p.probesPerWindow} wake probes before each`);

    const killedAt = new Map<string, number>(); // worker identity -> when its process was SIGKILLed
    const faults = { server: 0, worker: 0 };
    const did: string[] = [];
    const probeWindow = async () => {
      for (let i = 0; i < p.probesPerWindow; i++) await probes.probe();
    };
    for (let f = 0; f < p.faults; f++) {
      await probeWindow();
      await pause(ctx.rng.int(...p.gapMs));
      if (allStarted && (await openRuns(ctx)) === 0) break;
      const leased = await leasedNow(ctx);
      if (ctx.rng.chance(p.serverKillChance)) {
        const server = ctx.rng.pick(servers);
        const killed = Date.now();
        await server.stop("SIGKILL");
        const down = ctx.rng.int(...p.downMs);
        await pause(down);
        await server.start();
        faults.server++;
        const line = `SIGKILL ${server.name} (${leased.workflow} workflow / ${leased.activity} activity tasks leased cluster-wide), serving again after ${Date.now() - killed} ms`;
        ctx.log(line);
        did.push(line);
      } else {
        const worker = ctx.rng.pick(workers);
        const pid = worker.current?.child.pid;
        await worker.stop("SIGKILL");
        killedAt.set(`chaos-${worker.config.kind}-${pid}`, Date.now());
        faults.worker++;
        ctx.log(`SIGKILL ${worker.name} (connected to ${servers.find((s) => s.address === worker.config.address)?.name}; ${leased.workflow} workflow / ${leased.activity} activity tasks leased)`);
        await pause(ctx.rng.int(...p.restartDelayMs));
        await worker.start();
      }
    }
    await probeWindow(); // and once more with every process back
    const stats = await starting;
    const settled = await settle(ctx, stats);
    await probes.stop();

    const latencies = probes.results.map((r) => r.ms);
    const median = percentile(latencies, 50);
    const p90 = percentile(latencies, 90);
    const slowest = Math.max(...latencies);
    const byServer = ["server-2", "server-3"].map((s) => `${probes.results.filter((r) => r.server === s).length} on ${s}`).join(", ");
    // Reported, not asserted: a median under load says more about the machine than about dex.
    const probeLine = `${probes.results.length} wake probes (started on server-1, taken ${byServer}): dispatch median ${median} ms, p90 ${p90} ms, max ${slowest} ms`;
    const capacity = await capacityCheck(ctx, { activityName: "chaosStep", capacity: p.capacity, leaseMs: LEASE_MS, killedAt });
    const runs = new Map(settled.runs);
    for (const runId of probes.runIds.values()) runs.set(runId, "COMPLETED");
    for (const runId of timingOut) runs.set(runId, "TIMED_OUT");
    return {
      did: [
        `${stats.runs.size} workflows started through server-1, ${probes.runIds.size} probe runs`,
        `${faults.server} server SIGKILLs and ${faults.worker} worker SIGKILLs`,
        ...did,
        probeLine,
        capacity.line,
        settled.line,
      ],
      expect: { runs },
      checks: [
        ...settled.checks,
        check(
          "a task enqueued through one server reaches a poll parked on another, across server kills",
          probes.results.length > 0 && probes.lost.length === 0,
          probeLine,
          probes.lost,
        ),
        capacity.check,
      ],
    };
  },
};

async function openRuns(ctx: Parameters<Scenario["run"]>[0]): Promise<number> {
  const [row] = await ctx.sql<{ n: number }[]>`select count(*)::int as n from dex.runs where status in ('CREATED', 'RUNNING')`;
  return row!.n;
}

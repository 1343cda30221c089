/**
 * Retention benchmark (a): does a sweep of a million ended runs slow dispatch?
 *
 * Set-up, straight in SQL (starting a million runs through the API would take
 * most of an hour here): `--ended` COMPLETED runs on their own workflow queue,
 * each with `--events` history events, ended two days ago. Their queue keeps
 * runs forever (retention 0), so nothing is swept yet.
 *
 * Then twice the same dispatch measurement, the backlog scenario's
 * (scenarios/dex-backlog.ts): `--backlog` runs started with no worker, then a
 * worker process drains them while four probe lanes time PollWorkflowTasks
 * (claims made while the depth is above half the backlog count). First with
 * no sweep; then right after the ended runs' queue is given a 1 h retention,
 * so the server's sweep deletes them (batches of 500, each pausing as long as
 * it took) while the drain runs. Reported: claim p50/p99 of both, the sweep's
 * rate and its batches' lock time (from the server log), and how long the
 * whole million took.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { TaskQueueType } from "@dex/proto";
import { startDispatchProbe } from "../dispatch-probe.js";
import { percentile, pool, waitFor } from "../stats.js";
import type { BenchPostgres } from "../postgres.js";
import type { ProcessGroup } from "../processes.js";
import { startDex, type DexEnv } from "../systems/dex.js";
import { BACKLOG_QUEUE } from "../systems/dex-workload.js";
import { insertEndedRuns } from "./fixtures.js";

const ENDED_QUEUE = "bench-ended";

export interface SweepBenchOptions {
  ended: number;
  events: number;
  backlog: number;
}

export interface DrainFigures {
  claims: number;
  claimP50Ms: number;
  claimP99Ms: number;
  drainSeconds: number;
}

export async function sweepBench(pg: BenchPostgres, group: ProcessGroup, o: SweepBenchOptions, log: (line: string) => void) {
  // The server reads these at start, as an operator's would: sweep every 5 s, the default keeps forever.
  process.env.DEX_RETENTION_SWEEP_INTERVAL = "5s";
  process.env.DEX_DEFAULT_RETENTION = "0";
  const dex = await startDex(pg, group, "retention-sweep");
  try {
    await dex.client.raw.queues.createTaskQueue({ name: ENDED_QUEUE, type: TaskQueueType.WORKFLOW, retention: { seconds: 0n } });
    const t0 = performance.now();
    await insertEndedRuns(dex.sql, { queue: ENDED_QUEUE, runs: o.ended, events: o.events, endedSecondsAgo: 2 * 86_400 });
    await dex.sql`vacuum analyze dex.runs`;
    await dex.sql`vacuum analyze dex.history_events`;
    const setupSeconds = (performance.now() - t0) / 1000;
    log(`retention sweep: ${o.ended} ended runs with ${o.events} events each inserted in ${setupSeconds.toFixed(0)} s`);

    const quiet = await drain(dex, group, o.backlog, "quiet", log);
    log(`retention sweep: without a sweep: claim p50 ${quiet.claimP50Ms.toFixed(1)} ms, p99 ${quiet.claimP99Ms.toFixed(1)} ms (${quiet.claims} claims)`);

    const sweepStart = performance.now();
    await dex.client.raw.queues.updateTaskQueue({ name: ENDED_QUEUE, type: TaskQueueType.WORKFLOW, retention: { seconds: 3_600n }, updateMask: { paths: ["retention"] } });
    // The next pass (within 5 s) starts on them: drain once it has.
    await waitFor("the sweep to start", 60_000, async () => ((await remaining(dex)) < o.ended ? true : undefined), 200);
    const during = await drain(dex, group, o.backlog, "sweeping", log);
    const leftAfterDrain = await remaining(dex);
    log(`retention sweep: during the sweep: claim p50 ${during.claimP50Ms.toFixed(1)} ms, p99 ${during.claimP99Ms.toFixed(1)} ms (${during.claims} claims); ${leftAfterDrain} ended runs left`);
    await waitFor("the sweep to finish", 3 * 60 * 60_000, async () => ((await remaining(dex)) === 0 ? true : undefined), 2_000);
    const sweepSeconds = (performance.now() - sweepStart) / 1000;
    const [events] = await dex.sql<{ n: number }[]>`select count(*)::int as n from dex.history_events h join dex.runs r on r.id = h.run_id where r.task_queue = ${ENDED_QUEUE}`;
    log(`retention sweep: ${o.ended} runs deleted in ${sweepSeconds.toFixed(0)} s (${(o.ended / sweepSeconds).toFixed(0)} runs/s), ${events!.n} of their events left`);
    const batches = await sweepBatches(join(group.logDir, "dex-server-retention-sweep.log"));
    log(`retention sweep: ${batches.length} batches; lock time p50 ${percentile(batches, 50).toFixed(0)} ms, p99 ${percentile(batches, 99).toFixed(0)} ms, max ${Math.max(...batches).toFixed(0)} ms`);
    return {
      setupSeconds,
      quiet,
      during,
      sweepSeconds,
      runsPerSecond: o.ended / sweepSeconds,
      batches: batches.length,
      lockMsP50: percentile(batches, 50),
      lockMsP99: percentile(batches, 99),
      lockMsMax: Math.max(...batches),
    };
  } finally {
    await dex.close();
  }
}

/** lockMs of every "retention sweep deleted ended runs" line of the server's log. */
async function sweepBatches(file: string): Promise<number[]> {
  const text = await readFile(file, "utf8");
  return text
    .split("\n")
    .filter((line) => line.includes("retention sweep deleted ended runs"))
    .map((line) => Number((JSON.parse(line) as { lockMs: number }).lockMs));
}

async function remaining(dex: DexEnv): Promise<number> {
  const [row] = await dex.sql<{ n: number }[]>`select count(*)::int as n from dex.runs where task_queue = ${ENDED_QUEUE}`;
  return row!.n;
}

/** The backlog scenario's measurement, in short: start `runs` with no worker, then drain them with probes timing claims. */
async function drain(dex: DexEnv, group: ProcessGroup, runs: number, tag: string, log: (line: string) => void): Promise<DrainFigures> {
  await pool(runs, 200, async (i) => {
    await dex.client.start("backlogWorkflow", { instanceId: `${tag}-${i}`, input: i, taskQueue: BACKLOG_QUEUE });
  });
  log(`retention sweep: ${runs} runs waiting (${tag})`);
  const threshold = runs / 2;
  let depth = runs;
  const drainStart = performance.now();
  const worker = await dex.startWorkers(`wf-${tag}`, [{ kind: "workflow", queue: BACKLOG_QUEUE, concurrency: 100 }]);
  const probe = startDispatchProbe(dex, () => depth);
  await waitFor(`the backlog (${tag}) to drain`, 30 * 60_000, async () => {
    const [row] = await dex.sql<{ n: number }[]>`select count(*)::int as n from dex.workflow_tasks where queue_name = ${BACKLOG_QUEUE}`;
    depth = row!.n;
    return depth === 0 ? true : undefined;
  }, 250);
  const probes = await probe.stop();
  const drainSeconds = (performance.now() - drainStart) / 1000;
  // The next drain starts its own backlog with no worker.
  await group.stop(worker);
  const deep = probes.filter((p) => p.depth > threshold).map((p) => p.ms);
  return { claims: deep.length, claimP50Ms: percentile(deep, 50), claimP99Ms: percentile(deep, 99), drainSeconds };
}

/**
 * Continue-as-new chains under faults (decisions 0022, 0024, 0031). N chains
 * (chain-workload.ts) each consume `itemsPerRun` named events per run and
 * continue as new, while the driver (chain-driver.ts) sends them the items
 * (some ids twice, some in bursts), updates (one raced against each
 * continue-as-new, others at random, some with two callers of one id), and,
 * for some chains, a cancel raced against a continue-as-new too. Every call
 * goes through the instance id and is retried with the same id through
 * outages, on the other server. Meanwhile a workflow or activity worker
 * process, or one of the two servers, is SIGKILLed at random and started
 * again.
 *
 * The engine's claim, checked from the database and the callers' records
 * (invariants-chains.ts): every event consumed exactly once per chain, every
 * update id applied at most once per chain and every caller answered with
 * what the database holds, every acknowledged cancel ends its chain
 * CANCELLED; plus the checker's usual invariants (one open run per instance).
 */
import { firstChainState } from "../chain-workload.js";
import { check, type Scenario, type ScenarioContext } from "../environment.js";
import type { ChainRecord } from "../invariants-chains.js";
import type { RunStatus } from "../invariants.js";
import type { ServerSlot, WorkerSlot } from "../processes.js";
import { startRequest, startRuns } from "../workload.js";
import { ChainDriver, type DrivePlan } from "./chain-driver.js";
import { pause } from "./common.js";

export const chains: Scenario = {
  name: "chains",
  summary: "continue-as-new chains fed events (ids twice), updates (retried by instance id) and cancels, under worker and server SIGKILLs",
  async run(ctx) {
    const p = ctx.profile.chains;
    const n = ctx.workflows(p.chains);
    const servers = [await ctx.startServer(), await ctx.startServer()];
    const clients = servers.map((s) => ctx.client(s.address));
    await ctx.createQueues(clients[0]!, [
      { name: "default", type: "workflow" },
      { name: "default", type: "activity" },
    ]);
    const workers = servers.flatMap((s, i) =>
      (["workflow", "activity"] as const).map((kind) => ctx.worker(`${kind}-worker-${i + 1}`, { kind, address: s.address, taskQueue: "default", concurrency: 10 })),
    );
    await Promise.all(workers.map((w) => w.start()));

    const requests = Array.from({ length: n }, (_, i) => startRequest("chainWorkflow", `chain-${i}`, firstChainState(p.itemsPerRun, p.items)));
    const started = await startRuns(clients[0]!, requests, { concurrency: 4, spreadMs: 0, deadline: Date.now() + 60_000 });
    const toCancel = Math.round(n * p.cancelShare);
    const records: ChainRecord[] = requests.map((r, i) => ({
      instanceId: r.instanceId!,
      firstRunId: started.runs.get(r.instanceId!) ?? "00000000-0000-0000-0000-000000000000",
      cancel: i < toCancel,
      cancelAcked: false,
      events: new Map(),
      doneAcked: false,
      updates: new Map(),
    }));
    const cancelled = toCancel;
    ctx.log(`2 servers, a workflow and an activity worker on each; ${n} chains (${cancelled} to be cancelled), ${p.items} items each, continue-as-new every ${p.itemsPerRun}`);

    // Past this a call is given up as unanswered: the drive's own length, plus two minutes.
    const driver = new ChainDriver(clients, Date.now() + p.startSpreadMs + p.items * p.gapMs[1] + 120_000);
    let driving = true;
    const drives = Promise.all(
      records.map(async (record) => {
        const rng = ctx.rng.fork(record.instanceId);
        const plan: DrivePlan = {
          items: p.items,
          itemsPerRun: p.itemsPerRun,
          // After an item that ends a run's share: the cancel races that run's continue-as-new.
          cancelAfter: rng.int(1, Math.floor(p.items / p.itemsPerRun) - 1) * p.itemsPerRun - 1,
          gapMs: p.gapMs,
          burstChance: 0.25,
          duplicateChance: 0.3,
          updateChance: 0.2,
          secondCallerChance: 0.25,
        };
        await pause(rng.int(0, p.startSpreadMs));
        await driver.drive(record, plan, rng);
      }),
    ).finally(() => (driving = false));
    const faults = await injectFaults(ctx, servers, workers, () => driving);
    await drives;

    const instances = records.map((r) => r.instanceId);
    const settled = await waitForChainsToEnd(ctx, instances);
    const runs = await expectedRuns(ctx, records);
    const { stats } = driver;
    const did = [
      `${n} chains started, ${cancelled} cancelled mid-way; ${runs.size} runs in their lines`,
      `${faults.lines.length} faults: ${faults.summary}`,
      ...faults.lines,
      `driver: ${stats.calls} calls, ${stats.retried} retried through outages, ${stats.internal} answered INTERNAL (retried)`,
      settled,
    ];
    return {
      did,
      expect: { runs, chains: records },
      checks: [check("every chain was started (retried through outages)", started.failures.length === 0, `${started.runs.size} started`, started.failures)],
    };
  },
};

/** SIGKILLs a random worker, or one server at a time, faultGapMs apart, while `going()`. */
async function injectFaults(ctx: ScenarioContext, servers: ServerSlot[], workers: WorkerSlot[], going: () => boolean): Promise<{ lines: string[]; summary: string }> {
  const p = ctx.profile.chains;
  const lines: string[] = [];
  const counts = { server: 0, workflow: 0, activity: 0 };
  for (;;) {
    // Wait in small steps so the loop ends soon after the drivers do.
    const until = Date.now() + ctx.rng.int(...p.faultGapMs);
    while (going() && Date.now() < until) await pause(100);
    if (!going()) break;
    const slot: ServerSlot | WorkerSlot = ctx.rng.chance(p.serverKillChance) ? ctx.rng.pick(servers) : ctx.rng.pick(workers);
    const down = ctx.rng.int(...p.downMs);
    const killed = Date.now();
    await slot.stop("SIGKILL");
    await pause(down);
    await slot.start();
    const kind = "config" in slot ? slot.config.kind : "server";
    counts[kind as keyof typeof counts]++;
    const line = `SIGKILL ${slot.name}, running again after ${Date.now() - killed} ms`;
    ctx.log(line);
    lines.push(line);
  }
  return { lines, summary: `${counts.server} server, ${counts.workflow} workflow worker, ${counts.activity} activity worker SIGKILLs` };
}

/** Waits until no run of the chains is open (the settle timeout at most). */
async function waitForChainsToEnd(ctx: ScenarioContext, instances: string[]): Promise<string> {
  const began = Date.now();
  for (;;) {
    const [row] = await ctx.sql<{ open: number }[]>`
      select count(*)::int as open from dex.runs where instance_id = any(${instances}::text[]) and status in ('CREATED', 'RUNNING')`;
    const seconds = ((Date.now() - began) / 1000).toFixed(1);
    if (row!.open === 0) return `every chain ended ${seconds} s after the drivers finished`;
    if (Date.now() - began > ctx.profile.settleTimeoutMs) return `${row!.open} chains still open after ${seconds} s`;
    await pause(250);
  }
}

/**
 * The runs each chain must consist of: from the run the start returned, along
 * continued_as_run_id, each CONTINUED_AS_NEW but the last, which is COMPLETED
 * (CANCELLED for a cancelled chain). A run of the instance off that line is
 * one nobody started: the checker reports it.
 */
async function expectedRuns(ctx: ScenarioContext, records: ChainRecord[]): Promise<Map<string, RunStatus>> {
  const rows = await ctx.sql<{ id: string; continued_as_run_id: string | null }[]>`
    select id, continued_as_run_id from dex.runs where instance_id = any(${records.map((r) => r.instanceId)}::text[])`;
  const next = new Map(rows.map((r) => [r.id, r.continued_as_run_id]));
  const runs = new Map<string, RunStatus>();
  for (const record of records) {
    for (let id: string | null | undefined = record.firstRunId; id && !runs.has(id); id = next.get(id)) {
      runs.set(id, next.get(id) ? "CONTINUED_AS_NEW" : record.cancel ? "CANCELLED" : "COMPLETED");
    }
  }
  return runs;
}

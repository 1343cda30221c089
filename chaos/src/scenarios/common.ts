/** Pieces the load scenarios share: a server with workers, the standard load, and the outcome. */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fromBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { DexError, HistoryEventSchema } from "@dex/proto";
import type { Client } from "@dex/sdk";
import { check, type ScenarioContext } from "../environment.js";
import type { Check, RunStatus } from "../invariants.js";
import type { ServerSlot, WorkerSlot } from "../processes.js";
import { startRequest, startRuns, waitForRunsToEnd, type OrderInput, type StartStats } from "../workload.js";

export const IDLE_QUEUE = "idle";

export interface Cluster {
  server: ServerSlot;
  client: Client;
  workflowWorkers: WorkerSlot[];
  activityWorkers: WorkerSlot[];
  /** Processes running a workflow and an activity worker together (eager activity dispatch). */
  colocatedWorkers: WorkerSlot[];
}

/** One server, the default queues (plus an idle activity queue for parked polls), and worker processes. */
export async function startCluster(
  ctx: ScenarioContext,
  workers: { workflow: number; activity: number; colocated?: number },
  serverOptions: Parameters<ScenarioContext["startServer"]>[0] = {},
): Promise<Cluster> {
  const server = await ctx.startServer(serverOptions);
  const client = ctx.client(server.address);
  await ctx.createQueues(client, [
    { name: "default", type: "workflow" },
    { name: "default", type: "activity" },
    { name: IDLE_QUEUE, type: "activity" },
  ]);
  const make = (kind: WorkerSlot["config"]["kind"], n: number) =>
    Array.from({ length: n }, (_, i) => ctx.worker(`${kind}-worker-${i + 1}`, { kind, address: server.address, taskQueue: "default", concurrency: 10 }));
  const cluster = {
    server,
    client,
    workflowWorkers: make("workflow", workers.workflow),
    activityWorkers: make("activity", workers.activity),
    colocatedWorkers: make("colocated", workers.colocated ?? 0),
  };
  await Promise.all([...cluster.workflowWorkers, ...cluster.activityWorkers, ...cluster.colocatedWorkers].map((w) => w.start()));
  const colocated = workers.colocated ? `, ${workers.colocated} colocated (workflow + activity)` : "";
  ctx.log(`server ${server.address}, ${workers.workflow} workflow and ${workers.activity} activity worker processes${colocated}`);
  return cluster;
}

/** Starts `n` chaosOrder runs spread over `spreadMs`, retrying through outages (same request id). */
export function startOrders(ctx: ScenarioContext, client: Client, prefix: string, n: number, spreadMs: number, leaseMs = 4_000, taskQueue = "default"): Promise<StartStats> {
  const requests = Array.from({ length: n }, (_, i) => ({
    ...startRequest("chaosOrder", `${prefix}-${i}`, { timerMs: ctx.rng.int(50, 1_500), delayMs: 300, leaseMs } satisfies OrderInput),
    taskQueue,
  }));
  return startRuns(client, requests, { concurrency: 16, spreadMs, deadline: Date.now() + spreadMs + 120_000 });
}

/** Waits for the runs to end and turns the starts into the checker's expectations (all COMPLETED). */
export async function settle(ctx: ScenarioContext, stats: StartStats): Promise<{ runs: Map<string, RunStatus>; line: string; checks: Check[] }> {
  const ids = [...stats.runs.values()];
  const settled = await waitForRunsToEnd(ctx.sql, ids, ctx.profile.settleTimeoutMs);
  const line = settled.open.length === 0
    ? `all ${ids.length} runs ended ${(settled.ms / 1000).toFixed(1)} s after the load and faults stopped`
    : `${settled.open.length} of ${ids.length} runs still open after ${(settled.ms / 1000).toFixed(1)} s`;
  ctx.log(line);
  const checks = [
    check("every start was accepted (retried through outages)", stats.failures.length === 0, `${stats.runs.size} started, ${stats.retries} retried calls`, stats.failures),
  ];
  return { runs: new Map(ids.map((id) => [id, "COMPLETED" as const])), line, checks };
}

export interface ParkedPoll {
  /** When the poll ended, and how (empty answer, tasks, or an error code). */
  ended: Promise<{ at: number; outcome: string }>;
}

/** Raw polls parked on the idle queue (nothing ever arrives there): what a kill or SIGTERM does to parked polls. */
export function parkPolls(client: Client, n: number, label: string): ParkedPoll[] {
  return Array.from({ length: n }, (_, i) => ({
    ended: client.raw.worker
      .pollActivityTasks(
        { taskQueue: IDLE_QUEUE, maxTasks: 1, workerId: `${label}-parked-${i}`, maxWait: durationFromMs(60_000) },
        { deadline: 70_000 },
      )
      .then(
        (r) => ({ at: Date.now(), outcome: r.tasks.length === 0 ? "empty" : `${r.tasks.length} tasks` }),
        (err: unknown) => ({ at: Date.now(), outcome: DexError.from(err).code }),
      ),
  }));
}

/** Tasks leased right now: evidence that a fault hit work in flight. */
export async function leasedNow(ctx: ScenarioContext): Promise<{ workflow: number; activity: number }> {
  const [row] = await ctx.sql<{ workflow: number; activity: number }[]>`
    select (select count(*)::int from dex.workflow_tasks where leased_until > now()) as workflow,
           (select count(*)::int from dex.activity_tasks where leased_until > now()) as activity`;
  return row!;
}

export const pause = (ms: number) => sleep(ms);

/**
 * The database sessions of the scenario's database right now (pg_stat_activity
 * with what each waits for and since when), written to `<log dir>/<file>`:
 * what a hung server is waiting on. Returns a one-line summary.
 */
export async function snapshotSessions(ctx: ScenarioContext, file: string): Promise<string> {
  const rows = await ctx.sql<{ pid: number; app: string; state: string | null; wait: string | null; xact_ms: number | null; query_ms: number | null; blocked_by: number[]; query: string }[]>`
    select pid, application_name as app, state, wait_event_type || '/' || wait_event as wait,
           (extract(epoch from now() - xact_start) * 1000)::int as xact_ms,
           (extract(epoch from now() - query_start) * 1000)::int as query_ms,
           pg_blocking_pids(pid) as blocked_by, left(query, 300) as query
    from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() order by xact_start nulls last`;
  await writeFile(join(ctx.group.logDir, file), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  const counts = new Map<string, number>();
  for (const r of rows) {
    const key = `${r.app}: ${r.state ?? "?"}${r.wait ? ` (${r.wait})` : ""}${r.blocked_by.length ? " blocked" : ""}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return `${rows.length} sessions: ${[...counts].map(([k, n]) => `${n}x ${k}`).join("; ")} (details in ${file})`;
}

/** The attempt recorded in history for each completed activity, by "run id:seq". */
export async function completedAttempts(ctx: ScenarioContext): Promise<Map<string, number>> {
  const rows = await ctx.sql<{ run_id: string; event: Buffer }[]>`
    select run_id, event from dex.history_events where kind = 'activity_completed'`;
  const recorded = new Map<string, number>();
  for (const r of rows) {
    const attributes = fromBinary(HistoryEventSchema, r.event).attributes;
    if (attributes.case === "activityCompleted") recorded.set(`${r.run_id}:${attributes.value.seq}`, attributes.value.attempt);
  }
  return recorded;
}

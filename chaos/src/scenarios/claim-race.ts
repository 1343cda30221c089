/**
 * Many raw pollers (each its own gRPC connection, no SDK) race over one
 * activity queue. Each grant is recorded with its lease, and each poller then
 * completes, fails (retryable) or abandons the attempt, sometimes sending a
 * duplicate completion or a late one after its lease ended. Afterwards:
 * no task was leased to two pollers at once unless the earlier lease had
 * ended; attempts go up by one per grant; a superseded token never won; a
 * duplicate completion was always refused; every acknowledged completion is
 * the one history recorded.
 *
 * Times: a grant's claim time is its lease deadline minus the lease (1 s);
 * both are the database's clock, and the pollers' send times are this host's
 * clock, the same clock (all run on one machine), to the millisecond.
 */
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { DexError, type ActivityTask } from "@dex/proto";
import { encodePayload, type Client } from "@dex/sdk";
import { check, type Scenario, type ScenarioContext } from "../environment.js";
import type { Check } from "../invariants.js";
import { RACE_LEASE_MS, RACE_QUEUE, recordExecution, startRequest, startRuns, waitForRunsToEnd } from "../workload.js";
import { completedAttempts, pause, startCluster } from "./common.js";

export interface Grant {
  key: string;
  runId: string;
  seq: number;
  attempt: number;
  poller: string;
  /** The database clock at the claim (ms). */
  claimMs: number;
  leaseEndMs: number;
  action: "complete" | "fail" | "abandon" | "late";
  outcome?: { sentMs: number; accepted: boolean; code: string };
  duplicate?: string;
}

export const claimRace: Scenario = {
  name: "claim-race",
  summary: "many raw pollers over one activity queue: no task leased to two workers at once",
  async run(ctx) {
    const p = ctx.profile.claimRace;
    const n = ctx.workflows(p.workflows);
    const cluster = await startCluster(ctx, { workflow: 1, activity: 0 });
    await ctx.createQueues(cluster.client, [{ name: RACE_QUEUE, type: "activity" }]);
    const stats = await startRuns(
      cluster.client,
      Array.from({ length: n }, (_, i) => startRequest("raceWorkflow", `race-${i}`, { count: p.activitiesPerWorkflow })),
      { concurrency: 8, spreadMs: 0, deadline: Date.now() + 60_000 },
    );
    const runIds = [...stats.runs.values()];
    ctx.log(`${runIds.length} workflows scheduling ${p.activitiesPerWorkflow} activities each; ${p.pollers} raw pollers`);

    const grants: Grant[] = [];
    const handling = new Set<Promise<void>>();
    let pollErrors = 0;
    let stop = false;
    const poller = async (index: number) => {
      const client = ctx.client(cluster.server.address);
      const name = `poller-${index}`;
      while (!stop) {
        let tasks: ActivityTask[];
        try {
          const response = await client.raw.worker.pollActivityTasks(
            { taskQueue: RACE_QUEUE, maxTasks: ctx.rng.int(1, 4), workerId: name, maxWait: durationFromMs(1_000) },
            { deadline: 10_000 },
          );
          tasks = response.tasks;
        } catch {
          pollErrors++;
          await pause(100);
          continue;
        }
        for (const task of tasks) {
          const leaseEndMs = task.leaseDeadline ? timestampMs(task.leaseDeadline) : 0;
          const grant: Grant = { key: `${task.runId}:${task.seq}`, runId: task.runId, seq: task.seq, attempt: task.attempt, poller: name, claimMs: leaseEndMs - RACE_LEASE_MS, leaseEndMs, action: chooseAction(ctx, task.attempt) };
          grants.push(grant);
          const running = handle(ctx, client, task, grant).finally(() => handling.delete(running));
          handling.add(running);
        }
      }
    };
    const pollers = Array.from({ length: p.pollers }, (_, i) => poller(i + 1));
    const settled = await waitForRunsToEnd(ctx.sql, runIds, ctx.profile.settleTimeoutMs);
    stop = true;
    await Promise.all(pollers);
    await Promise.all([...handling]);
    ctx.log(`${grants.length} grants; runs ended after ${(settled.ms / 1000).toFixed(1)} s`);

    const actions = new Map<string, number>();
    for (const g of grants) actions.set(g.action, (actions.get(g.action) ?? 0) + 1);
    return {
      did: [
        `${runIds.length} workflows, ${runIds.length * p.activitiesPerWorkflow} activity tasks, ${p.pollers} raw pollers, ${pollErrors} failed polls`,
        `${grants.length} grants: ${[...actions].map(([a, k]) => `${k} ${a}`).join(", ")}`,
        settled.open.length === 0 ? `all runs ended after ${(settled.ms / 1000).toFixed(1)} s` : `${settled.open.length} runs still open`,
      ],
      expect: { runs: new Map(runIds.map((id) => [id, "COMPLETED" as const])) },
      checks: [...analyse(grants), await acknowledgedInHistory(ctx, grants)],
    };
  },
};

/** Mostly complete; fail or abandon early attempts so that every task ends within a few leases. */
function chooseAction(ctx: ScenarioContext, attempt: number): Grant["action"] {
  if (attempt >= 4) return "complete";
  const r = ctx.rng.next();
  return r < 0.5 ? "complete" : r < 0.7 ? "fail" : r < 0.85 ? "abandon" : "late";
}

async function handle(ctx: ScenarioContext, client: Client, task: ActivityTask, grant: Grant): Promise<void> {
  // What an activity does first: record that this attempt ran.
  await recordExecution(ctx.sql, { runId: task.runId, seq: task.seq, activityName: task.activityName, attempt: task.attempt }, grant.poller);
  const send = async (call: () => Promise<unknown>) => {
    const sentMs = Date.now();
    try {
      await call();
      return { sentMs, accepted: true, code: "OK" };
    } catch (err) {
      return { sentMs, accepted: false, code: DexError.from(err).code };
    }
  };
  const complete = () => client.raw.worker.completeActivityTask({ taskToken: task.taskToken, result: encodePayload({ seq: task.seq, attempt: task.attempt }) });
  switch (grant.action) {
    case "complete":
      await pause(ctx.rng.int(0, 400));
      grant.outcome = await send(complete);
      // The same token again: must be refused whatever the first answer was.
      if (ctx.rng.chance(0.3)) grant.duplicate = (await send(complete)).code;
      return;
    case "fail":
      await pause(ctx.rng.int(0, 400));
      grant.outcome = await send(() => client.raw.worker.failActivityTask({ taskToken: task.taskToken, failure: { message: "chaos: injected failure", type: "ChaosFailure" } }));
      return;
    case "late":
      // Past the lease, and sometimes past the reaper's retry and a new grant.
      await pause(Math.max(0, grant.leaseEndMs - Date.now()) + ctx.rng.int(0, 1_500));
      grant.outcome = await send(complete);
      return;
    case "abandon":
      return; // the worker "died": the lease runs out and the reaper retries
  }
}

export function analyse(grants: Grant[]): Check[] {
  const TOLERANCE_MS = 1;
  const overlap: string[] = [];
  const attempts: string[] = [];
  const stale: string[] = [];
  const duplicates: string[] = [];
  let duplicatesSent = 0;
  const late = { accepted: 0, refused: 0 };
  const byKey = new Map<string, Grant[]>();
  for (const g of grants) byKey.set(g.key, [...(byKey.get(g.key) ?? []), g]);
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.claimMs - b.claimMs || a.attempt - b.attempt);
    if (list[0]!.attempt !== 1) attempts.push(`${key}: first grant seen is attempt ${list[0]!.attempt}`);
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1]!;
      const b = list[i]!;
      if (b.attempt !== a.attempt + 1) attempts.push(`${key}: attempt ${a.attempt} (${a.poller}) then attempt ${b.attempt} (${b.poller})`);
      const released = a.outcome?.accepted ? Math.min(a.outcome.sentMs, a.leaseEndMs) : a.leaseEndMs;
      if (b.claimMs < released - TOLERANCE_MS) {
        overlap.push(`${key}: attempt ${b.attempt} granted to ${b.poller} at ${iso(b.claimMs)} while attempt ${a.attempt} (${a.poller}) held it until ${iso(released)}`);
      }
      if (a.outcome?.accepted && (a.action === "complete" || a.action === "late")) {
        overlap.push(`${key}: granted again (attempt ${b.attempt}, ${b.poller}) after attempt ${a.attempt}'s completion was accepted`);
      }
      if (a.outcome?.accepted && b.claimMs < a.outcome.sentMs - TOLERANCE_MS) {
        stale.push(`${key}: attempt ${a.attempt}'s ${a.action} sent at ${iso(a.outcome.sentMs)} was accepted, but attempt ${b.attempt} had been granted at ${iso(b.claimMs)}`);
      }
    }
    if (list.filter((g) => g.outcome?.accepted && g.action !== "fail").length > 1) stale.push(`${key}: more than one completion accepted`);
  }
  for (const g of grants) {
    if (g.duplicate !== undefined) {
      duplicatesSent++;
      if (g.duplicate !== "NOT_FOUND") duplicates.push(`${g.key} attempt ${g.attempt}: a second completion with the same token answered ${g.duplicate}`);
    }
    if (g.action === "late" && g.outcome) g.outcome.accepted ? late.accepted++ : late.refused++;
    if (g.outcome && !g.outcome.accepted && g.outcome.code !== "NOT_FOUND") duplicates.push(`${g.key} attempt ${g.attempt}: ${g.action} answered ${g.outcome.code} (expected OK or NOT_FOUND)`);
  }
  return [
    check("claim race: no task leased to two workers at once (unless the first lease had ended)", overlap.length === 0, `${grants.length} grants of ${byKey.size} tasks`, overlap),
    check("claim race: each grant is the next attempt (1, 2, 3, ...)", attempts.length === 0, `${byKey.size} tasks`, attempts),
    check("claim race: a superseded token never wins", stale.length === 0, `late completions after the lease: ${late.refused} refused, ${late.accepted} accepted before any new grant`, stale),
    check("claim race: duplicate completions are refused NOT_FOUND", duplicates.length === 0, `${duplicatesSent} duplicates sent`, duplicates),
  ];
}

/** Every completion a poller saw acknowledged is the one in history (same attempt), and history has no other. */
async function acknowledgedInHistory(ctx: ScenarioContext, grants: Grant[]): Promise<Check> {
  const recorded = await completedAttempts(ctx);
  const violations: string[] = [];
  let acknowledged = 0;
  for (const g of grants) {
    if (!g.outcome?.accepted || g.action === "fail") continue;
    acknowledged++;
    const attempt = recorded.get(g.key);
    if (attempt !== g.attempt) violations.push(`${g.key}: attempt ${g.attempt}'s completion was acknowledged; history records ${attempt === undefined ? "none" : `attempt ${attempt}`}`);
  }
  return check("claim race: every acknowledged completion is the one in history", violations.length === 0, `${acknowledged} completions acknowledged, ${recorded.size} in history`, violations);
}

const iso = (ms: number) => new Date(ms).toISOString().slice(11, 23);

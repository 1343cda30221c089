/**
 * The dex servers' database connections killed with pg_terminate_backend at
 * random moments under load: in the middle of a statement, idle in a
 * transaction, idle in the pool, and the LISTEN connection that carries
 * cross-server wake-ups. Two servers share the database (workers on both,
 * starts through the first), so a lost LISTEN shows up as slow dispatch
 * rather than not at all. The servers must not crash, every run must end,
 * and every invariant must hold; after each LISTEN kill both servers must
 * LISTEN again.
 *
 * The servers' sessions are told apart by application_name (server.ts:
 * "dex-server" and its "dex-server-*" pools); the LISTEN session by its last statement.
 */
import { appendFile } from "node:fs/promises";
import { join } from "node:path";
import { check, type Scenario, type ScenarioContext } from "../environment.js";
import type { ServerSlot, WorkerSlot } from "../processes.js";
import { pause, settle, startOrders } from "./common.js";

interface Backend {
  pid: number;
  app: string;
  state: string | null;
  listen: boolean;
  query: string;
}

export const connectionKills: Scenario = {
  name: "connection-kills",
  summary: "pg_terminate_backend on the dex servers' connections (LISTEN included) at random moments under load",
  async run(ctx) {
    const p = ctx.profile.connectionKills;
    const n = ctx.workflows(p.workflows);
    const servers = [await ctx.startServer(), await ctx.startServer()];
    const client = ctx.client(servers[0]!.address);
    await ctx.createQueues(client, [
      { name: "default", type: "workflow" },
      { name: "default", type: "activity" },
    ]);
    const workers = servers.flatMap((server, i) => [
      ctx.worker(`workflow-worker-${i + 1}`, { kind: "workflow", address: server.address, taskQueue: "default", concurrency: 10 }),
      ctx.worker(`activity-worker-${i + 1}`, { kind: "activity", address: server.address, taskQueue: "default", concurrency: 10 }),
    ]);
    await Promise.all(workers.map((w) => w.start()));
    await waitForListeners(ctx, servers.length, 10_000);
    ctx.log(`2 servers (${servers.map((s) => s.address).join(", ")}), a workflow and an activity worker on each; starts through server-1`);

    const starting = startOrders(ctx, client, "ck", n, p.spreadMs);
    let allStarted = false;
    void starting.then(() => (allStarted = true));
    ctx.log(`starting ${n} workflows over ${p.spreadMs / 1000} s; killing connections every ${p.gapMs[0]}-${p.gapMs[1]} ms`);

    const killedByState = new Map<string, number>();
    const relisten: number[] = [];
    const relistenViolations: string[] = [];
    let rounds = 0;
    let killed = 0;
    let listenKills = 0;
    // Every kill with what the session was doing, to line up with the server logs.
    const killLog = join(ctx.group.logDir, "kills.jsonl");
    // Kill while the load lasts, then on until the runs end or the round budget is spent.
    while (rounds < p.maxRounds && !(allStarted && (await openRuns(ctx)) === 0)) {
      await pause(ctx.rng.int(...p.gapMs));
      rounds++;
      const backends = await serverBackends(ctx);
      const listeners = backends.filter((b) => b.listen);
      const others = backends.filter((b) => !b.listen);
      const victims = pickSome(ctx, others, ctx.rng.int(1, p.maxPerRound));
      if (listeners.length && ctx.rng.chance(p.listenChance)) victims.push(ctx.rng.pick(listeners));
      for (const v of victims) {
        const [row] = await ctx.sql<{ ok: boolean }[]>`select pg_terminate_backend(${v.pid}) as ok`;
        if (!row?.ok) continue; // it had gone already
        await appendFile(killLog, JSON.stringify({ at: new Date().toISOString(), round: rounds, ...v, query: v.query.slice(0, 200) }) + "\n");
        killed++;
        const state = v.listen ? "LISTEN" : `${v.app}: ${v.state ?? "?"}`;
        killedByState.set(state, (killedByState.get(state) ?? 0) + 1);
      }
      if (victims.some((v) => v.listen)) {
        listenKills++;
        // A server that lost its LISTEN must open it again: wait for it (no kills meanwhile).
        const took = await waitForListeners(ctx, servers.length, p.relistenTimeoutMs, victims.map((v) => v.pid));
        if (took === undefined) relistenViolations.push(`LISTEN kill ${listenKills}: fewer than ${servers.length} LISTEN sessions ${p.relistenTimeoutMs} ms later`);
        else relisten.push(took);
      }
    }
    const stats = await starting;
    ctx.log(`${rounds} rounds, ${killed} sessions terminated (${listenKills} LISTEN)`);
    const settled = await settle(ctx, stats);
    const byState = [...killedByState].sort((a, b) => b[1] - a[1]).map(([s, k]) => `${k} ${s}`).join(", ");
    return {
      did: [
        `${stats.runs.size} workflows started on 2 servers`,
        `${rounds} kill rounds, ${killed} sessions terminated: ${byState || "none"}`,
        `${listenKills} LISTEN kills; LISTEN back on both servers after ${relisten.length ? `${Math.min(...relisten)}-${Math.max(...relisten)} ms` : "-"}`,
        `server starts: ${servers.map((s: ServerSlot) => `${s.name} ${s.starts}`).join(", ")}; worker starts: ${workers.map((w: WorkerSlot) => w.starts).reduce((a, b) => a + b, 0)}`,
        settled.line,
      ],
      expect: { runs: settled.runs },
      checks: [
        ...settled.checks,
        check("a killed session was in the middle of work (the kills hit transactions, not only idle pool sessions)", [...killedByState.keys()].some((s) => !s.endsWith(": idle") && s !== "LISTEN"), byState || "none"),
        check("after a LISTEN session is killed, every server LISTENs again", relistenViolations.length === 0 && listenKills > 0, `${listenKills} LISTEN kills`, listenKills === 0 ? ["no LISTEN session was killed"] : relistenViolations),
      ],
    };
  },
};

/** The dex servers' sessions on the scenario's database. */
async function serverBackends(ctx: ScenarioContext): Promise<Backend[]> {
  const rows = await ctx.sql<{ pid: number; app: string; state: string | null; query: string }[]>`
    select pid, application_name as app, state, query from pg_stat_activity
    where datname = current_database() and application_name like 'dex-server%' and pid <> pg_backend_pid()`;
  return rows.map((r) => ({ pid: r.pid, app: r.app, state: r.state, listen: isListen(r.query), query: r.query }));
}

/** postgres.js LISTENs with `listen "channel"` on a session of its own, which runs nothing else. */
const isListen = (query: string) => /^\s*listen\b/i.test(query);

/**
 * Waits until `count` LISTEN sessions exist, none of them one just killed (a
 * terminated session stays in pg_stat_activity until its backend has exited).
 * Returns the time it took, or undefined at the deadline.
 */
async function waitForListeners(ctx: ScenarioContext, count: number, timeoutMs: number, killed: number[] = []): Promise<number | undefined> {
  const began = Date.now();
  for (;;) {
    const listening = (await serverBackends(ctx)).filter((b) => b.listen && !killed.includes(b.pid)).length;
    if (listening >= count) return Date.now() - began;
    if (Date.now() - began > timeoutMs) return undefined;
    await pause(50);
  }
}

function pickSome<T>(ctx: ScenarioContext, items: T[], k: number): T[] {
  const pool = [...items];
  const picked: T[] = [];
  while (picked.length < k && pool.length) picked.push(pool.splice(ctx.rng.int(0, pool.length - 1), 1)[0]!);
  return picked;
}

async function openRuns(ctx: ScenarioContext): Promise<number> {
  const [row] = await ctx.sql<{ n: number }[]>`select count(*)::int as n from dex.runs where status in ('CREATED', 'RUNNING')`;
  return row!.n;
}

/**
 * The network between the dex server and Postgres partitions (tcp-proxy.ts):
 * first a black hole (nothing gets through either way; sockets stay open),
 * then half-open (Postgres's side of every connection is gone, so Postgres
 * rolls their transactions back, while the server's sockets stay open and
 * silent forever), then it heals. Nothing tells the server its connections
 * died: it must find out itself (store/connection-watchdog.ts) and recover
 * without a restart, and every run must complete. The server runs with a
 * short statement_timeout and stall margin so that takes seconds, not the
 * production default's 35 s.
 *
 * Then a worker is cut off from the server past its task's lease (a second
 * proxy between one raw poller and the server, black-holed while its
 * completion is in flight): the task is granted again and completed by
 * another poller; when the partition heals the late completion reaches the
 * server and must be refused (NOT_FOUND, a stale token), and history must
 * hold exactly the winning attempt.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { DexError, HistoryEventSchema, type ActivityTask } from "@dex/proto";
import { encodePayload, type Client } from "@dex/sdk";
import { check, type Scenario, type ScenarioContext } from "../environment.js";
import { PgProxy } from "../pg-proxy.js";
import { TcpProxy } from "../tcp-proxy.js";
import { RACE_QUEUE, recordExecution, startRequest, startRuns, waitForRunsToEnd } from "../workload.js";
import { leasedNow, pause, settle, startCluster, startOrders } from "./common.js";
import { noInternalErrors } from "./server-log.js";

export const networkPartition: Scenario = {
  name: "network-partition",
  summary: "black-hole, then half-open, the server's Postgres connections: it recovers without a restart; a worker cut off past its lease is refused",
  async run(ctx) {
    const p = ctx.profile.networkPartition;
    const n = ctx.workflows(p.workflows);
    const proxy = await PgProxy.inFrontOf(ctx.databaseUrl);
    try {
      const env = { DEX_STATEMENT_TIMEOUT_MS: String(p.statementTimeoutMs), DEX_DB_STALL_MARGIN_MS: String(p.stallMarginMs) };
      const cluster = await startCluster(ctx, { workflow: 1, activity: 1 }, { databaseUrl: proxy.url(ctx.databaseUrl), env });
      await ctx.createQueues(cluster.client, [{ name: RACE_QUEUE, type: "activity" }]);
      ctx.log(`server's database through the proxy on port ${proxy.tcp.port}; statement_timeout ${p.statementTimeoutMs} ms, stall margin ${p.stallMarginMs} ms`);
      const starting = startOrders(ctx, cluster.client, "np", n, p.spreadMs);

      const did: string[] = [];
      const recovery: string[] = [];
      for (let k = 0; k < p.partitions; k++) {
        await pause(ctx.rng.int(...p.gapMs));
        const leased = await leasedNow(ctx);
        const blackholeMs = ctx.rng.int(...p.blackholeMs);
        const halfOpenMs = ctx.rng.int(...p.halfOpenMs);
        const open = proxy.tcp.openConnections;
        proxy.tcp.blackhole();
        ctx.log(`partition ${k + 1}: black hole for ${blackholeMs} ms (${open} server connections open; ${leased.workflow}/${leased.activity} tasks leased)`);
        const during = probeUntil(cluster.client, Date.now() + blackholeMs + halfOpenMs);
        await pause(blackholeMs);
        const before = proxy.tcp.stats.halfOpened;
        proxy.tcp.halfOpen();
        ctx.log(`partition ${k + 1}: half-open for ${halfOpenMs} ms (${proxy.tcp.stats.halfOpened - before} connections, open or opened during the black hole, silent for good)`);
        await pause(halfOpenMs);
        proxy.tcp.heal();
        const healedAt = Date.now();
        const answers = await during;
        const recovered = await probeUntilOk(cluster.client, healedAt + p.recoverWithinMs);
        const line = recovered.ok
          ? `answered again ${recovered.ms} ms after the heal`
          : `still not answering ${p.recoverWithinMs} ms after the heal (last: ${recovered.last})`;
        ctx.log(`partition ${k + 1}: healed; ${line}`);
        if (!recovered.ok) recovery.push(`partition ${k + 1}: ${line}`);
        did.push(
          `partition ${k + 1}: black hole ${blackholeMs} ms + half-open ${halfOpenMs} ms over ${open} connections; ` +
            `calls during it: ${summarise(answers)}; ${line}`,
        );
      }
      const stats = await starting;
      ctx.log(`${stats.runs.size} workflows started; cutting off a worker past its lease ${p.cutoffs} times`);
      const cutoffs = await cutOffWorkers(ctx, cluster.server.address, cluster.client, p.cutoffs);
      const settled = await settle(ctx, stats);
      const runs = new Map([...settled.runs, ...cutoffs.runs.map((id) => [id, "COMPLETED" as const] as const)]);
      const history = await winnersInHistory(ctx, cutoffs.results);
      return {
        did: [
          `${stats.runs.size} workflows started (${stats.retries} start calls retried); 1 workflow and 1 activity worker process`,
          ...did,
          `${proxy.tcp.stats.connections} server connections through the proxy in all; the server was started ${cluster.server.starts} time(s)`,
          ...cutoffs.lines,
          settled.line,
        ],
        expect: { runs },
        checks: [
          ...settled.checks,
          check("partition: the server recovers without a restart", recovery.length === 0 && cluster.server.starts === 1, `${p.partitions} partitions, ${cluster.server.starts} start(s)`, recovery),
          check(
            "partition: a worker cut off past its lease has its late completion refused (NOT_FOUND)",
            cutoffs.violations.length === 0 && cutoffs.results.length === p.cutoffs,
            `${cutoffs.results.length} of ${p.cutoffs} cut-offs done: late completions answered ${summarise(cutoffs.results.map((r) => r.lateCode))}`,
            cutoffs.violations,
          ),
          history,
          await noInternalErrors(ctx, cluster.server),
        ],
      };
    } finally {
      await proxy.close();
    }
  },
};

/** A call that needs the database (ListTaskQueues and ListRuns read through the server's main pool). */
async function probe(client: Client): Promise<string> {
  try {
    await client.raw.queues.listTaskQueues({}, { deadline: 5_000 });
    await client.raw.client.listRuns({ pageSize: 1 }, { deadline: 5_000 });
    return "OK";
  } catch (err) {
    return DexError.from(err).code;
  }
}

/** What calls answered during the partition (one at a time until `until`). */
async function probeUntil(client: Client, until: number): Promise<string[]> {
  const answers: string[] = [];
  while (Date.now() < until) {
    answers.push(await probe(client));
    await pause(200);
  }
  return answers;
}

async function probeUntilOk(client: Client, deadline: number): Promise<{ ok: boolean; ms: number; last: string }> {
  const began = Date.now();
  let last = "";
  while (Date.now() < deadline) {
    last = await probe(client);
    if (last === "OK") return { ok: true, ms: Date.now() - began, last };
    await pause(100);
  }
  return { ok: false, ms: Date.now() - began, last };
}

function summarise(codes: string[]): string {
  const counts = new Map<string, number>();
  for (const code of codes) counts.set(code, (counts.get(code) ?? 0) + 1);
  return [...counts].map(([code, k]) => `${k} ${code}`).join(", ") || "none";
}

interface CutOff {
  runId: string;
  seq: number;
  lateAttempt: number;
  winnerAttempt: number;
  lateCode: string;
}

/**
 * `count` times: a raceWorkflow run with one activity; a raw poller reaches the server only through a
 * TCP proxy, takes the task, and is cut off (black hole) while its completion is on the way. A direct
 * poller gets the next attempt once the lease (1 s) ran out and completes it; then the partition heals
 * and the held completion reaches the server.
 */
async function cutOffWorkers(ctx: ScenarioContext, serverAddress: string, direct: Client, count: number) {
  const [host, port] = [serverAddress.slice(0, serverAddress.lastIndexOf(":")), Number(serverAddress.slice(serverAddress.lastIndexOf(":") + 1))];
  const lines: string[] = [];
  const violations: string[] = [];
  const results: CutOff[] = [];
  const runs: string[] = [];
  for (let i = 0; i < count; i++) {
    const link = new TcpProxy({ host, port });
    await link.listen();
    try {
      const cutClient = ctx.client(`127.0.0.1:${link.port}`);
      const started = await startRuns(direct, [startRequest("raceWorkflow", `np-cutoff-${i}`, { count: 1 })], { concurrency: 1, spreadMs: 0, deadline: Date.now() + 30_000 });
      const runId = started.runs.get(`np-cutoff-${i}`);
      if (!runId) {
        violations.push(`cut-off ${i + 1}: the run did not start: ${started.failures.join("; ")}`);
        continue;
      }
      runs.push(runId);
      const first = await pollRace(cutClient, runId, "cut-off-worker", Date.now() + 30_000);
      if (!first) {
        violations.push(`cut-off ${i + 1}: the cut-off worker got no task`);
        continue;
      }
      await recordExecution(ctx.sql, { runId, seq: first.seq, activityName: first.activityName, attempt: first.attempt }, "cut-off-worker");
      link.blackhole();
      const complete = (client: Client, task: ActivityTask) =>
        client.raw.worker.completeActivityTask({ taskToken: task.taskToken, result: encodePayload(task.attempt) }, { deadline: 60_000 }).then(
          () => "OK",
          (err: unknown) => DexError.from(err).code,
        );
      const late = complete(cutClient, first); // held by the partition
      const second = await pollRace(direct, runId, "direct-worker", Date.now() + 30_000);
      if (!second) {
        link.heal();
        violations.push(`cut-off ${i + 1}: the task was not granted again after the cut-off worker's lease`);
        continue;
      }
      await recordExecution(ctx.sql, { runId, seq: second.seq, activityName: second.activityName, attempt: second.attempt }, "direct-worker");
      const winner = await complete(direct, second);
      link.heal();
      let lateCode = await late;
      // The held call may have died with its connection instead: the worker retries it, as the SDK does.
      if (lateCode !== "OK" && lateCode !== "NOT_FOUND") lateCode = await complete(ctx.client(`127.0.0.1:${link.port}`), first);
      results.push({ runId, seq: first.seq, lateAttempt: first.attempt, winnerAttempt: second.attempt, lateCode });
      lines.push(`cut-off ${i + 1}: attempt ${first.attempt} cut off; attempt ${second.attempt} granted to another worker and completed (${winner}); late completion answered ${lateCode}`);
      if (winner !== "OK") violations.push(`cut-off ${i + 1} (${runId}): the winning attempt ${second.attempt}'s completion answered ${winner}`);
      if (second.attempt !== first.attempt + 1) violations.push(`cut-off ${i + 1} (${runId}): attempt ${first.attempt} then attempt ${second.attempt}`);
      if (lateCode !== "NOT_FOUND") violations.push(`cut-off ${i + 1} (${runId}): attempt ${first.attempt}'s late completion answered ${lateCode}`);
    } finally {
      await link.close();
    }
  }
  const ended = await waitForRunsToEnd(ctx.sql, runs, 30_000);
  if (ended.open.length) violations.push(`${ended.open.length} cut-off runs still open 30 s later`);
  return { lines, violations, results, runs };
}

/** Polls the race queue until the task of `runId` comes out (nothing else is on that queue now). */
async function pollRace(client: Client, runId: string, workerId: string, deadline: number): Promise<ActivityTask | undefined> {
  while (Date.now() < deadline) {
    try {
      const { tasks } = await client.raw.worker.pollActivityTasks({ taskQueue: RACE_QUEUE, maxTasks: 1, workerId, maxWait: durationFromMs(2_000) }, { deadline: 10_000 });
      const task = tasks.find((t) => t.runId === runId);
      if (task) return task;
    } catch {
      await pause(100);
    }
  }
  return undefined;
}

/** History holds one activity_completed per cut-off task, from the winning attempt. */
async function winnersInHistory(ctx: ScenarioContext, cutoffs: CutOff[]) {
  const violations: string[] = [];
  for (const c of cutoffs) {
    const rows = await ctx.sql<{ event: Buffer }[]>`
      select event from dex.history_events where run_id = ${c.runId} and kind in ('activity_completed', 'activity_failed')`;
    const attempts = rows.flatMap((r) => {
      const a = fromBinary(HistoryEventSchema, r.event).attributes;
      return a.case === "activityCompleted" && a.value.seq === c.seq ? [a.value.attempt] : a.case === "activityFailed" && a.value.seq === c.seq ? [-1] : [];
    });
    if (attempts.length !== 1 || attempts[0] !== c.winnerAttempt) {
      violations.push(`${c.runId} seq ${c.seq}: history has outcomes [${attempts.join(", ")}], expected exactly attempt ${c.winnerAttempt} (attempt ${c.lateAttempt} was late)`);
    }
  }
  return check("partition: history holds exactly the winning attempt of each cut-off task", violations.length === 0, `${cutoffs.length} cut-off tasks`, violations);
}

/**
 * Reproduction (found by `pnpm chaos --scenario sigterm`): on a server whose
 * queue cache is cold (just started), a burst of >= 10 concurrent
 * CompleteWorkflowTask calls that schedule activities stalls the whole server
 * for about 60 s.
 *
 * Why (server/src/engine/completion.ts, checkAgainstDatabase): inside the
 * completion's transaction, queueExists() asks `engine.sql` (the pool), not
 * `tx`, whether the activity queue exists when engine.knownQueues does not
 * hold it yet. Each completion holds one of the pool's 10 connections for its
 * transaction and waits for another: with 10 in flight, none gets one. Polls
 * and every other call queue behind them; the transactions sit "idle in
 * transaction" until Postgres's idle_in_transaction_session_timeout (60 s,
 * store/db.ts) kills them.
 *
 *   node --import tsx chaos/repro/completion-burst.ts [--burst 12]
 *
 * Prints how long the burst took, what the database sessions were doing 3 s
 * in, and each run's history against runs.history_length.
 */
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { DexError, TaskQueueType, type WorkflowTask } from "@dex/proto";
import { createClient, encodePayload } from "@dex/sdk";
import { freePort, migrate } from "@dex/server";
import { startEmbeddedPostgres } from "@dex/server/dev/embedded-postgres";
import { ProcessGroup, ServerSlot } from "../src/processes.js";

const { values } = parseArgs({ options: { burst: { type: "string", default: "12" } } });
const burst = Number(values.burst);
const dataDir = join(tmpdir(), `dex-repro-pg-${randomBytes(3).toString("hex")}`);
const pg = await startEmbeddedPostgres({ dataDir, ephemeral: true });
const url = pg.urlFor("postgres");
const group = new ProcessGroup(tmpdir());
try {
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  await migrate(sql);
  // Server A creates the queues (its cache knows them) and takes the starts.
  const a = new ServerSlot(group, { name: "repro-server-a", databaseUrl: url, port: await freePort() });
  await a.start();
  const clientA = createClient({ address: a.address });
  await clientA.raw.queues.createTaskQueue({ name: "default", type: TaskQueueType.WORKFLOW });
  await clientA.raw.queues.createTaskQueue({ name: "default", type: TaskQueueType.ACTIVITY });
  for (let i = 0; i < burst; i++) {
    await clientA.raw.client.startWorkflow({ workflowName: "burst", instanceId: `burst-${i}`, taskQueue: "default", requestId: `r-${i}` });
  }
  // Server B has just started: nothing in its queue cache. (A restarted server is the same.)
  const b = new ServerSlot(group, { name: "repro-server-b", databaseUrl: url, port: await freePort() });
  await b.start();
  const clientB = createClient({ address: b.address });
  const tasks: WorkflowTask[] = [];
  while (tasks.length < burst) {
    const r = await clientB.raw.worker.pollWorkflowTasks({ taskQueue: "default", maxTasks: burst - tasks.length, workerId: "repro", maxWait: durationFromMs(5_000) });
    tasks.push(...r.tasks);
  }
  console.log(`server B: ${tasks.length} workflow tasks claimed; completing them all at once, each scheduling one activity`);
  const began = Date.now();
  const done = Promise.all(
    tasks.map((task) =>
      clientB.raw.worker
        .completeWorkflowTask({
          taskToken: task.taskToken,
          commands: [{ command: { case: "scheduleActivity", value: { seq: 1, activityName: "step", taskQueue: "default", input: encodePayload(1) } } }],
        }, { deadline: 120_000 })
        .then(() => "OK", (err: unknown) => DexError.from(err).code),
    ),
  );
  const early = await Promise.race([done, new Promise<undefined>((r) => setTimeout(() => r(undefined), 3_000))]);
  if (!early) {
    const sessions = await sql`
      select application_name as app, state, wait_event_type || '/' || wait_event as wait, count(*)::int as n
      from pg_stat_activity where datname = 'postgres' and pid <> pg_backend_pid() group by 1, 2, 3 order by 4 desc`;
    console.log("3 s in, database sessions:", sessions.map((s) => `${s.n}x ${s.app} ${s.state} ${s.wait ?? ""}`).join("; "));
  }
  const answers = await done;
  const counts = new Map<string, number>();
  for (const a of answers) counts.set(a, (counts.get(a) ?? 0) + 1);
  console.log(`burst answered after ${Date.now() - began} ms: ${[...counts].map(([c, n]) => `${n} ${c}`).join(", ")}`);
  const runs = await sql<{ instance_id: string; history_length: number; events: number }[]>`
    select r.instance_id, r.history_length, (select count(*)::int from dex.history_events h where h.run_id = r.id) as events
    from dex.runs r order by r.instance_id`;
  const torn = runs.filter((r) => r.events !== r.history_length);
  console.log(`runs whose history does not match history_length: ${torn.length}${torn.map((r) => `\n  ${r.instance_id}: ${r.events} events, history_length ${r.history_length}`).join("")}`);
  clientA.close();
  clientB.close();
  await sql.end();
} finally {
  await group.close(5_000);
  await pg.stop();
  await rm(dataDir, { recursive: true, force: true });
}

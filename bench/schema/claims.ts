/**
 * Schema benchmark behind docs/decisions/0003-schema-and-claims.md: the
 * workflow-task claim on a real (embedded) Postgres, fsync on, default
 * settings, in a scratch database built from the real migrations.
 *
 *   pnpm bench:schema [--claims 400] [--depths 1000,10000,100000] [--in-flight 500]
 *
 * Two designs of the lease on dex.workflow_tasks:
 *  - "visible_at" (current, migrations/0001_init.sql): the claim writes the
 *    lease's end into visible_at, so leased rows leave the claim index range;
 *    the claim is the real claimWorkflowTasks() from server/src/store.
 *  - "leased_until" (alternative): the claim writes only leased_until, which
 *    is in no index (so the update can be HOT), and the claim filters
 *    `leased_until is null or leased_until < now()` while it walks the same
 *    (priority desc, visible_at) index, leased rows included.
 * And, for one queue's backlog next to another queue, LIST partitions per
 * queue against one unpartitioned table holding both queues.
 *
 * Each measured claim takes a batch (10) from a queue holding `depth` pending
 * tasks and `in-flight` leased ones; after each claim the batch is completed
 * (task rows deleted) and as many new tasks are enqueued, untimed, so depth
 * and in-flight count stay constant. Heartbeats extend the leases of the
 * in-flight tasks one statement per task, as heartbeatActivity() does.
 *
 * Prints Markdown tables. The machine is shared: the load column is the
 * 1-minute load average at the start and end of each case.
 */
import { cpus } from "node:os";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { migrate, openDatabase, startEmbeddedPostgres } from "../../server/src/index.js";
import type { Sql } from "../../server/src/store/db.js";
import { createTaskQueue } from "../../server/src/store/task-queues.js";
import {
  claim,
  completeAndRefill,
  enqueue,
  explainPick,
  heartbeat,
  kib,
  load,
  ms,
  pct,
  percentile,
  tableStats,
  walPerOp,
  type Lease,
  type LeaseStyle,
  type TableStats,
  type Target,
} from "./sql.js";

const { values } = parseArgs({
  options: {
    claims: { type: "string", default: "400" },
    warmup: { type: "string", default: "30" },
    depths: { type: "string", default: "1000,10000,100000" },
    "in-flight": { type: "string", default: "500" },
    batch: { type: "string", default: "10" },
    "heartbeat-rounds": { type: "string", default: "2" },
    "backlog": { type: "string", default: "100000" },
    "case-seconds": { type: "string", default: "25" },
    "extra-in-flight": { type: "string", default: "5000" },
  },
});
const CLAIMS = Number(values.claims);
const WARMUP = Number(values.warmup);
const DEPTHS = values.depths!.split(",").map(Number);
const IN_FLIGHT = Number(values["in-flight"]);
const BATCH = Number(values.batch);
const HEARTBEAT_ROUNDS = Number(values["heartbeat-rounds"]);
const BACKLOG = Number(values.backlog);
/** A case stops measuring after this long even if it took fewer claims (the slow single-table case). */
const CASE_SECONDS = Number(values["case-seconds"]);
/** A further case at 10k pending with this many tasks in flight (0: none): the alternative scans them all. */
const EXTRA_IN_FLIGHT = Number(values["extra-in-flight"]);
// ---------------------------------------------------------------- cases

/** One queue being measured: its design and name. */
interface Subject {
  target: Target;
  queue: string;
}

interface ClaimResult {
  n: number;
  p50: number;
  p99: number;
  claimUpd: number;
  claimHot: number;
  hbN: number;
  hbP50: number;
  hbUpd: number;
  hbHot: number;
  /** Median WAL bytes of one claim / one lease extension (each in a rolled-back transaction). */
  claimWal: number;
  hbWal: number;
  indexBefore: number;
  indexAfter: number;
  plan: string;
  load: string;
}

/**
 * Fills each subject's queue with `inFlight` leased tasks (the oldest, leased
 * by real claims) and `depth` pending ones, vacuums, then times claims of one
 * batch each, the subjects taking turns (completing and refilling after each
 * claim, untimed), so that load on the shared machine and autovacuum hit
 * them alike. Then extends every in-flight lease `heartbeatRounds` times,
 * again taking turns, and measures WAL per claim and per extension.
 */
async function runInterleaved(
  sql: Sql,
  subjects: Subject[],
  depth: number,
  inFlight: number,
  heartbeatRounds: number,
): Promise<ClaimResult[]> {
  const loadStart = load();
  const leases: Lease[][] = [];
  for (const { target, queue } of subjects) {
    await enqueue(sql, target.table, queue, inFlight, "now() - interval '2 hours'");
    const held: Lease[] = [];
    while (held.length < inFlight) {
      const got = await claim(sql, target, queue, BATCH);
      if (got.length === 0) throw new Error("could not lease the in-flight tasks");
      held.push(...got);
    }
    leases.push(held);
    await enqueue(sql, target.table, queue, depth, "now() - interval '1 hour'");
  }
  for (const relation of new Set(subjects.map((s) => s.target.relation))) {
    await sql.unsafe(`vacuum analyze ${relation}`);
  }
  await sql.unsafe(`vacuum analyze dex.runs`);
  const plans: string[] = [];
  for (const { target, queue } of subjects) plans.push(await explainPick(sql, target, queue, BATCH));

  const before = await Promise.all(subjects.map((s) => tableStats(sql, s.target.relation)));
  const times: number[][] = subjects.map(() => []);
  const deadline = performance.now() + CASE_SECONDS * 1000;
  for (let i = 0; i < WARMUP + CLAIMS; i++) {
    for (let k = 0; k < subjects.length; k++) {
      // Alternate who goes first.
      const j = i % 2 === 0 ? k : subjects.length - 1 - k;
      const { target, queue } = subjects[j]!;
      const t0 = performance.now();
      const got = await claim(sql, target, queue, BATCH);
      const dt = performance.now() - t0;
      if (got.length !== BATCH) throw new Error(`claim on ${queue} took ${got.length} tasks, expected ${BATCH}`);
      if (i >= WARMUP) times[j]!.push(dt);
      await completeAndRefill(sql, target.table, queue, got);
    }
    if (performance.now() > deadline && i >= WARMUP + 20) break;
  }
  const afterClaims: TableStats[] = [];
  for (const s of subjects) afterClaims.push(await tableStats(sql, s.target.relation));

  const hbTimes: number[][] = subjects.map(() => []);
  for (let round = 0; round < heartbeatRounds; round++) {
    for (let l = 0; l < inFlight; l++) {
      for (let j = 0; j < subjects.length; j++) {
        const { target, queue } = subjects[j]!;
        const t0 = performance.now();
        await heartbeat(sql, target, queue, leases[j]![l]!);
        hbTimes[j]!.push(performance.now() - t0);
      }
    }
  }
  const afterHeartbeats: TableStats[] = [];
  for (const s of subjects) afterHeartbeats.push(await tableStats(sql, s.target.relation));

  const claimWal: number[] = [];
  const hbWal: number[] = [];
  if (heartbeatRounds > 0) {
    for (let j = 0; j < subjects.length; j++) {
      const { target, queue } = subjects[j]!;
      claimWal.push(await walPerOp(sql, 21, async (tx) => void (await claim(tx, target, queue, BATCH))));
      let l = 0;
      hbWal.push(await walPerOp(sql, 21, (tx) => heartbeat(tx, target, queue, leases[j]![l++]!)));
    }
  }
  const loadEnd = load();
  return subjects.map((s, j) => {
    const t = times[j]!.sort((a, b) => a - b);
    const h = hbTimes[j]!.sort((a, b) => a - b);
    return {
      n: t.length,
      p50: percentile(t, 0.5),
      p99: percentile(t, 0.99),
      claimUpd: afterClaims[j]!.upd - before[j]!.upd,
      claimHot: afterClaims[j]!.hot - before[j]!.hot,
      hbN: h.length,
      hbP50: percentile(h, 0.5),
      hbUpd: afterHeartbeats[j]!.upd - afterClaims[j]!.upd,
      hbHot: afterHeartbeats[j]!.hot - afterClaims[j]!.hot,
      claimWal: claimWal[j] ?? NaN,
      hbWal: hbWal[j] ?? NaN,
      indexBefore: before[j]!.indexBytes,
      indexAfter: afterHeartbeats[j]!.indexBytes,
      plan: plans[j]!,
      load: `${loadStart}–${loadEnd}`,
    };
  });
}

let altPartitions = 0;

/** A queue of the design: a real task queue (createTaskQueue) or a partition of the alternative table. */
async function newQueue(sql: Sql, style: LeaseStyle, name: string): Promise<Subject> {
  if (style === "visible_at") {
    const queue = await createTaskQueue(sql, { type: "workflow", name, capacity: 0 });
    if (!queue) throw new Error(`queue ${name} exists`);
    return { target: { table: "dex.workflow_tasks", relation: `dex.${queue.partitionName}`, style, real: true }, queue: name };
  }
  const partition = `workflow_tasks_alt_q${++altPartitions}`;
  await sql.unsafe(
    `create table dex.${partition} partition of dex.workflow_tasks_alt for values in ('${name}') with (fillfactor = 80)`,
  );
  return { target: { table: "dex.workflow_tasks_alt", relation: `dex.${partition}`, style, real: false }, queue: name };
}

/** Empties what a previous case left behind. */
async function reset(sql: Sql): Promise<void> {
  await sql`truncate dex.runs, dex.inbox`;
  for (const { partition } of await sql<{ partition: string }[]>`
    select c.relname as partition from pg_inherits i
    join pg_class c on c.oid = i.inhrelid
    where i.inhparent in ('dex.workflow_tasks'::regclass, 'dex.workflow_tasks_alt'::regclass)`) {
    await sql.unsafe(`drop table dex.${partition}`);
  }
  await sql`delete from dex.task_queues`;
  await sql`truncate dex.workflow_tasks_flat_q, dex.workflow_tasks_flat`;
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const dataDir = `/tmp/dex-bench-schema-${process.pid}`;
  const started = performance.now();
  const progress = (what: string) =>
    process.stderr.write(`done: ${what} (${Math.round((performance.now() - started) / 1000)} s)\n`);
  const pg = await startEmbeddedPostgres({ dataDir, ephemeral: true });
  const admin = openDatabase({ url: pg.url, maxConnections: 1, applicationName: "dex-bench" });
  let sql: Sql | undefined;
  try {
    await admin.unsafe("create database dex_bench_schema");
    await admin.end();
    // One connection: every statement runs on the same backend, one after the other.
    sql = openDatabase({ url: pg.urlFor("dex_bench_schema"), maxConnections: 1, applicationName: "dex-bench" });
    await migrate(sql);
    const [{ version } = { version: "?" }] = await sql<{ version: string }[]>`select version()`;

    // The alternative: the same columns, lease columns in no index.
    await sql.unsafe(`
      create table dex.workflow_tasks_alt (like dex.workflow_tasks including defaults including constraints)
        partition by list (queue_name);
      alter table dex.workflow_tasks_alt add primary key (queue_name, run_id);
      create index workflow_tasks_alt_claim on dex.workflow_tasks_alt (priority desc, visible_at);
      -- One table for every queue (no partitions): with the queue leading the claim index, and without.
      create table dex.workflow_tasks_flat_q (like dex.workflow_tasks including defaults including constraints)
        with (fillfactor = 80);
      alter table dex.workflow_tasks_flat_q add primary key (queue_name, run_id);
      create index workflow_tasks_flat_q_claim on dex.workflow_tasks_flat_q (queue_name, priority desc, visible_at);
      create table dex.workflow_tasks_flat (like dex.workflow_tasks including defaults including constraints)
        with (fillfactor = 80);
      alter table dex.workflow_tasks_flat add primary key (queue_name, run_id);
      create index workflow_tasks_flat_claim on dex.workflow_tasks_flat (priority desc, visible_at);
    `);

    console.log(`# dex schema benchmark`);
    console.log();
    console.log(
      `${new Date().toISOString()}; ${cpus().length} × ${cpus()[0]?.model.trim()}; Node ${process.version}; ` +
        `${version.split(" on ")[0]}; fsync on, default settings; one connection; ` +
        `batch ${BATCH}; ${CLAIMS} claims per case after ${WARMUP} warm-up (at most ${CASE_SECONDS} s), ` +
        `the cases of one table taking turns; lease extension ${HEARTBEAT_ROUNDS}× per in-flight task.`,
    );

    // 1 + 2: claim latency and HOT ratio, per design and depth; both designs measured together.
    const labels = ["(a) lease in `visible_at` (current)", "(b) `leased_until` filter, lease in no index"];
    const rows1: string[] = [];
    const rows2: string[] = [];
    const matrix = DEPTHS.map((depth) => ({ depth, inFlight: IN_FLIGHT, rounds: HEARTBEAT_ROUNDS }));
    if (EXTRA_IN_FLIGHT > 0) matrix.push({ depth: 10_000, inFlight: EXTRA_IN_FLIGHT, rounds: 0 });
    for (const { depth, inFlight, rounds } of matrix) {
      await reset(sql);
      const subjects = [
        await newQueue(sql, "visible_at", `cur-${depth}-${inFlight}`),
        await newQueue(sql, "leased_until", `alt-${depth}-${inFlight}`),
      ];
      const results = await runInterleaved(sql, subjects, depth, inFlight, rounds);
      results.forEach((r, j) => {
        rows1.push(
          `| ${depth.toLocaleString("en")} | ${inFlight.toLocaleString("en")} | ${labels[j]} | ${r.n} | ` +
            `${ms(r.p50)} | ${ms(r.p99)} | ${r.plan} | ${r.load} |`,
        );
        if (rounds > 0) {
          rows2.push(
            `| ${depth.toLocaleString("en")} | ${labels[j]} | ${pct(r.claimHot, r.claimUpd)} (${r.claimHot}/${r.claimUpd}) | ` +
              `${pct(r.hbHot, r.hbUpd)} (${r.hbHot}/${r.hbUpd}) | ${Math.round(r.claimWal).toLocaleString("en")} | ` +
              `${Math.round(r.hbWal).toLocaleString("en")} | ${ms(r.hbP50)} | ${kib(r.indexBefore)} → ${kib(r.indexAfter)} |`,
          );
        }
      });
      progress(`depth ${depth}, ${inFlight} in flight`);
    }
    console.log();
    console.log(`## 1. Claim latency (ms per claim of ${BATCH})`);
    console.log();
    console.log(`| pending | in flight | design | claims | p50 | p99 | row pick (EXPLAIN ANALYZE, one claim) | load |`);
    console.log(`|--:|--:|---|--:|--:|--:|---|---|`);
    for (const row of rows1) console.log(row);
    console.log();
    console.log(`## 2. HOT updates on the queue's partition (n_tup_hot_upd / n_tup_upd) and WAL per operation`);
    console.log();
    console.log(
      `| pending | design | claims HOT | lease extensions HOT | WAL B / claim of ${BATCH} | WAL B / extension | extension p50 ms | indexes KiB (after vacuum → end) |`,
    );
    console.log(`|--:|---|--:|--:|--:|--:|--:|---|`);
    for (const row of rows2) console.log(row);

    // 3: a backlog on queue A next to claims on queue B, four layouts measured together.
    const smallDepth = 1000;
    await reset(sql);
    const layouts: Array<{ label: string; backlog: number; a: Subject; b: Subject }> = [];
    {
      const a = await newQueue(sql, "visible_at", "base-A");
      layouts.push({ label: "partition per queue, A empty (baseline)", backlog: 0, a, b: await newQueue(sql, "visible_at", "base-B") });
    }
    {
      const a = await newQueue(sql, "visible_at", "part-A");
      layouts.push({ label: "partition per queue", backlog: BACKLOG, a, b: await newQueue(sql, "visible_at", "part-B") });
    }
    for (const [label, table, prefix] of [
      ["one table, index (queue_name, priority desc, visible_at)", "dex.workflow_tasks_flat_q", "flatq"],
      ["one table, index (priority desc, visible_at) as on the partitions", "dex.workflow_tasks_flat", "flat"],
    ] as const) {
      const target: Target = { table, relation: table, style: "visible_at", real: false };
      layouts.push({ label, backlog: BACKLOG, a: { target, queue: `${prefix}-A` }, b: { target, queue: `${prefix}-B` } });
    }
    // Queue A's backlog is older than everything on B (it has been piling up); nobody claims it, so it needs no runs.
    for (const { backlog, a } of layouts) {
      if (backlog > 0) await enqueue(sql, a.target.table, a.queue, backlog, "now() - interval '3 hours'", false);
    }
    for (const relation of new Set(layouts.map((l) => l.a.target.relation))) await sql.unsafe(`vacuum analyze ${relation}`);
    const results3 = await runInterleaved(sql, layouts.map((l) => l.b), smallDepth, IN_FLIGHT, 0);
    progress("queue B next to queue A's backlog");
    console.log();
    console.log(
      `## 3. Claims on queue B (${smallDepth.toLocaleString("en")} pending, ${IN_FLIGHT} in flight) next to queue A's backlog (ms per claim of ${BATCH})`,
    );
    console.log();
    console.log(`| layout | A pending | claims | p50 | p99 | row pick (EXPLAIN ANALYZE, one claim) | load |`);
    console.log(`|---|--:|--:|--:|--:|---|---|`);
    results3.forEach((r, j) => {
      const l = layouts[j]!;
      console.log(`| ${l.label} | ${l.backlog.toLocaleString("en")} | ${r.n} | ${ms(r.p50)} | ${ms(r.p99)} | ${r.plan} | ${r.load} |`);
    });
    console.log();
    console.log(`Total ${Math.round((performance.now() - started) / 1000)} s.`);
  } finally {
    await sql?.end();
    await pg.stop();
  }
}

await main();

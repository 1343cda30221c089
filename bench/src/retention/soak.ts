/**
 * Retention benchmark (b), the soak: `--rate` workflows per second (oneStep:
 * one no-op activity, 8 history events) for `--minutes`, with a server
 * default retention of 1 minute and the default sweep interval (60 s). Every
 * 30 s it records the size on disk of everything in the dex schema (tables,
 * partitions, indexes, TOAST: pg_total_relation_size) and the live and dead
 * rows of runs and history_events. Storage must level off once the first
 * runs pass their retention: the sweep deletes what the load adds, and
 * autovacuum (Postgres defaults: a table is vacuumed once 20% + 50 of its
 * rows are dead, naptime 1 min) makes that space reusable by new rows, so the
 * files stop growing at about retention + interval + vacuum lag worth of rows.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { BenchPostgres } from "../postgres.js";
import type { ProcessGroup } from "../processes.js";
import { startDex } from "../systems/dex.js";
import { ACTIVITY_QUEUES, WORKFLOW_QUEUE } from "../systems/dex-workload.js";

export interface SoakSample {
  minute: number;
  /** Every table of the dex schema (partitions included) with its indexes and TOAST, bytes. */
  totalBytes: number;
  runsLive: number;
  runsDead: number;
  historyLive: number;
  historyDead: number;
  started: number;
  deletedSoFar: number;
}

export async function soakBench(pg: BenchPostgres, group: ProcessGroup, o: { rate: number; minutes: number }, log: (line: string) => void) {
  process.env.DEX_DEFAULT_RETENTION = "1m";
  delete process.env.DEX_RETENTION_SWEEP_INTERVAL;
  const dex = await startDex(pg, group, "retention-soak");
  try {
    await Promise.all([
      dex.startWorkers("wf", [{ kind: "workflow", queue: WORKFLOW_QUEUE, concurrency: 100 }]),
      dex.startWorkers("act", ACTIVITY_QUEUES.map((queue) => ({ kind: "activity" as const, queue, concurrency: 100 }))),
    ]);
    const samples: SoakSample[] = [];
    const began = performance.now();
    const endAt = began + o.minutes * 60_000;
    let started = 0;
    let failures = 0;
    const inFlight = new Set<Promise<void>>();
    // A steady rate: each tick starts the runs due by now (catching up after a slow tick), never a burst.
    const driver = (async () => {
      while (performance.now() < endAt) {
        const due = Math.floor(((performance.now() - began) / 1000) * o.rate);
        while (started < due) {
          const i = started++;
          const p = dex.client
            .start("oneStep", { instanceId: `soak-${i}`, input: i, taskQueue: WORKFLOW_QUEUE })
            .then(() => undefined, () => void failures++)
            .finally(() => inFlight.delete(p));
          inFlight.add(p);
        }
        await sleep(20);
      }
      await Promise.all(inFlight);
    })();
    const sampler = (async () => {
      for (let k = 0; performance.now() < endAt + 1_000; k++) {
        const at = began + k * 30_000;
        if (at > performance.now()) await sleep(at - performance.now());
        const sample = await measure(dex.sql, (performance.now() - began) / 60_000, started);
        samples.push(sample);
        log(
          `soak ${sample.minute.toFixed(1)} min: ${(sample.totalBytes / 2 ** 20).toFixed(1)} MiB; runs ${sample.runsLive} live / ${sample.runsDead} dead, ` +
            `history ${sample.historyLive} / ${sample.historyDead}; ${sample.started} started, ${sample.deletedSoFar} deleted`,
        );
      }
    })();
    await Promise.all([driver, sampler]);
    const [vacuums] = await dex.sql<{ runs: number; history: number }[]>`
      select (select autovacuum_count from pg_stat_user_tables where schemaname = 'dex' and relname = 'runs')::int as runs,
             (select autovacuum_count from pg_stat_user_tables where schemaname = 'dex' and relname = 'history_events')::int as history`;
    return { rate: o.rate, minutes: o.minutes, started, failures, samples, autovacuums: vacuums };
  } finally {
    await dex.close();
  }
}

async function measure(sql: import("postgres").Sql, minute: number, started: number): Promise<SoakSample> {
  const [size] = await sql<{ bytes: string }[]>`
    select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint::text as bytes
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'dex' and c.relkind = 'r'`;
  const rows = await sql<{ relname: string; live: number; dead: number }[]>`
    select relname, n_live_tup::int as live, n_dead_tup::int as dead from pg_stat_user_tables
    where schemaname = 'dex' and relname in ('runs', 'history_events')`;
  const of = (name: string) => rows.find((r) => r.relname === name) ?? { live: 0, dead: 0 };
  const [deleted] = await sql<{ n: number }[]>`select count(*)::int as n from dex.runs`;
  return {
    minute,
    totalBytes: Number(size!.bytes),
    runsLive: of("runs").live,
    runsDead: of("runs").dead,
    historyLive: of("history_events").live,
    historyDead: of("history_events").dead,
    started,
    deletedSoFar: started - deleted!.n,
  };
}

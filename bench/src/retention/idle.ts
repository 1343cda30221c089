/**
 * Retention benchmark (c): what the sweep costs an idle cluster. A `dex
 * server` with a 30-day default retention, no load, sweeping every 5 s (12
 * times the default rate, so a short window holds many passes), for
 * `seconds`; the statements the sweep ran are read from pg_stat_statements
 * by their text, and scaled to the default interval (60 s).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { BenchPostgres } from "../postgres.js";
import { perSecond } from "../postgres.js";
import type { ProcessGroup } from "../processes.js";
import { startDex } from "../systems/dex.js";

/** Text only the sweep's statements contain (store/retention.ts). */
const SWEEP_TEXT = [/with recursive queues/, /pg_try_advisory_xact_lock/, /make_interval\(secs/, /clock_timestamp\(\) - now\(\)/];
const INTERVAL_S = 5;

export async function idleBench(pg: BenchPostgres, group: ProcessGroup, o: { seconds: number }, log: (line: string) => void) {
  process.env.DEX_DEFAULT_RETENTION = "30d";
  process.env.DEX_RETENTION_SWEEP_INTERVAL = `${INTERVAL_S}s`;
  const dex = await startDex(pg, group, "retention-idle");
  try {
    const before = await pg.counters(dex.database);
    const sweepBefore = await sweepCalls(pg, dex.database);
    await sleep(o.seconds * 1000);
    const after = await pg.counters(dex.database);
    const sweepStatements = (await sweepCalls(pg, dex.database)) - sweepBefore;
    const passes = o.seconds / INTERVAL_S;
    const all = perSecond(before, after);
    const perPass = sweepStatements / passes;
    log(
      `retention idle: ${sweepStatements} sweep statements in ${o.seconds} s (${passes} passes, ${perPass.toFixed(1)} per pass, ` +
        `BEGIN/COMMIT not counted); at the default 60 s interval ${(perPass / 60).toFixed(3)} statements/s; ` +
        `the idle server in all: ${all.statementsPerSec.toFixed(2)} statements/s with the 5 s sweep`,
    );
    return { seconds: o.seconds, intervalSeconds: INTERVAL_S, sweepStatements, perPass, perSecondAtDefaultInterval: perPass / 60, serverStatementsPerSec: all.statementsPerSec };
  } finally {
    await dex.close();
  }
}

async function sweepCalls(pg: BenchPostgres, database: string): Promise<number> {
  const top = await pg.topStatements(database, 500);
  return top.filter((s) => SWEEP_TEXT.some((re) => re.test(s.query))).reduce((sum, s) => sum + s.calls, 0);
}

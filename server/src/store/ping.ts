/** The database health probe's statement (database-health.ts runs it every couple of seconds). */
import type { Queryable } from "./db.js";

/** Resolves once Postgres has answered a trivial statement; rejects with the driver's error. */
export async function pingDatabase(sql: Queryable): Promise<void> {
  await sql`select 1`;
}

/**
 * How far the database's clock is ahead of this process's (negative: behind), in ms, read once:
 * now() against the midpoint of the round trip. Run ids carry this process's clock and
 * created_at the database's; ListRuns' time filters rely on the two agreeing (run-id-time.ts).
 */
export async function databaseClockOffsetMs(sql: Queryable): Promise<number> {
  const sent = Date.now();
  const [row] = await sql<{ now: Date }[]>`select now() as now`;
  const received = Date.now();
  return row!.now.getTime() - (sent + received) / 2;
}

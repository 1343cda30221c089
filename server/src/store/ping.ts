/** The database health probe's statement (database-health.ts runs it every couple of seconds). */
import type { Queryable } from "./db.js";

/** Resolves once Postgres has answered a trivial statement; rejects with the driver's error. */
export async function pingDatabase(sql: Queryable): Promise<void> {
  await sql`select 1`;
}

/**
 * Run ids are UUIDv7 (engine/commands.ts): their first 48 bits are the Unix
 * milliseconds at which a dex server created the run. ListRuns' time filters
 * use that to bound the primary-key walk, which the planner cannot infer (it
 * does not know that id order follows created_at).
 *
 * Measured with 100,000 runs over 30 days (`pnpm bench:list-runs`): a window
 * of one day 15 days back walked runs_pkey from the newest run, filtering
 * created_at, through 47,000 rows before the first match (120-190 ms, growing
 * with the table); with the bounds the planner reads only the window's ids
 * (3,300 rows, top-N sort: 7-13 ms, growing with the window, not the table).
 * An index on created_at did not help: the planner still chose the walk.
 *
 * The bounds only narrow the scan; created_at stays the filter, so the answer
 * is the same wherever the id's time and created_at (the database's clock, at
 * the insert's transaction start) agree within CLOCK_SLACK_MS. A dex server
 * whose clock runs more than that away from the database's would see its runs
 * miss time-filtered listings near the window's edges. A server on a test clock
 * (@dex/test-environment shifts the database's now() by days) skips the bounds:
 * there the id's time and created_at need not agree at all (Engine.testClock).
 */

/** How far the id's time (a dex server's clock) may stray from created_at (the database's). */
export const CLOCK_SLACK_MS = 10 * 60_000;

/** The smallest UUID whose 48-bit time prefix is `ms` (0 below the epoch). */
export function smallestIdAt(ms: number): string {
  const hex = Math.max(0, Math.min(ms, 2 ** 48 - 1)).toString(16).padStart(12, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

/** Id bounds that hold every run created in [after, before), with CLOCK_SLACK_MS of room each side. */
export function idBoundsOf(range: { createdAfter?: Date | undefined; createdBefore?: Date | undefined }): {
  /** Ids at or above this. */
  from?: string;
  /** Ids below this. */
  below?: string;
} {
  return {
    ...(range.createdAfter ? { from: smallestIdAt(range.createdAfter.getTime() - CLOCK_SLACK_MS) } : {}),
    ...(range.createdBefore ? { below: smallestIdAt(range.createdBefore.getTime() + CLOCK_SLACK_MS) } : {}),
  };
}

/**
 * The lease of an activity attempt that starts now, as SQL: one definition for
 * every statement that starts an attempt. The claim (activity-tasks.ts
 * claimActivityTasks) and the eager dispatch of a workflow-task completion
 * (completion.ts insertActivityTasks) must grant exactly the same lease, or a
 * heartbeat, the start-to-close cap, the reaper and the retries would treat an
 * eager attempt differently from a polled one.
 *
 * Both fragments read the columns by their bare names, `lease_ms`,
 * `start_to_close_ms` and `schedule_to_close_deadline`, as the task row (or
 * the row about to be inserted) names them; `attemptDeadline` is the
 * expression (or column) holding ATTEMPT_DEADLINE's value.
 * - attempt_deadline, the attempt's hard cap: now() + start-to-close (rows
 *   written before migration 0002 have none: their lease_ms);
 * - the lease (leased_until, and visible_at while leased): now() + lease_ms
 *   (the heartbeat timeout, else start-to-close), never past the attempt's cap
 *   nor the schedule-to-close deadline.
 */
import type postgres from "postgres";
import type { Queryable } from "./db.js";

type Fragment = postgres.PendingQuery<postgres.Row[]>;

export function attemptDeadlineSql(sql: Queryable): Fragment {
  return sql`now() + coalesce(start_to_close_ms, lease_ms) * interval '1 millisecond'`;
}

export function leaseEndSql(sql: Queryable, attemptDeadline: Fragment): Fragment {
  return sql`least(now() + lease_ms * interval '1 millisecond', ${attemptDeadline},
                   coalesce(schedule_to_close_deadline, 'infinity'))`;
}

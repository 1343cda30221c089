/**
 * The SQL spelling of engine/model.ts's status sets and dedup-key prefixes,
 * so no statement spells them out by hand.
 *
 * Status sets are inlined as literal lists (`status in ('CREATED', 'RUNNING')`),
 * not sent as a parameter (`status = any($1)`), on purpose: the planner must
 * prove from the statement alone that a partial index's predicate holds, and
 * postgres.js prepares every statement, so after a few calls Postgres may
 * plan it once, generically, without the parameter's value. Measured with
 * EXPLAIN on Postgres 18 under plan_cache_mode = force_generic_plan (record
 * 0010): with `= any($1)` the start's `on conflict (instance_id) where status
 * ...` fails with 42P10 (no arbiter index: runs_one_open_run_per_instance no
 * longer matches), findOpenRun leaves that index for runs_by_instance plus a
 * filter, and admitHead's holder count leaves runs_concurrency_holders for a
 * sequential scan; with the literal each keeps its partial index. The literal
 * is a constant, so every statement's text is the same on each call and stays
 * prepared (postgres.js keys prepared statements by their text).
 *
 * Dedup prefixes are literals too: they are constants, and a literal keeps
 * the statement text (and so its plan) what it was.
 */
import type postgres from "postgres";
import { dedupPrefix, type DedupKind, OPEN_STATUSES, UNSUCCESSFUL_STATUSES, type RunStatus } from "../engine/model.js";
import type { Queryable } from "./db.js";

/** A Postgres string literal; only ever given the constants of engine/model.ts. */
function literal(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

function list(values: readonly RunStatus[]): string {
  return `(${values.map(literal).join(", ")})`;
}

const OPEN_LIST = list(OPEN_STATUSES);
const UNSUCCESSFUL_LIST = list(UNSUCCESSFUL_STATUSES);

/** `('CREATED', 'RUNNING')`, for `status in ${openStatuses(sql)}`. */
export function openStatuses(sql: Queryable): postgres.PendingQuery<postgres.Row[]> {
  return sql.unsafe(OPEN_LIST);
}

/** `('FAILED', 'CANCELLED', 'TERMINATED')`: what reuse policy allow_if_failed follows. */
export function unsuccessfulStatuses(sql: Queryable): postgres.PendingQuery<postgres.Row[]> {
  return sql.unsafe(UNSUCCESSFUL_LIST);
}

/** The key prefix as a text literal, for `${dedupPrefixSql(sql, DedupKind.TIMER)} || seq`. */
export function dedupPrefixSql(sql: Queryable, kind: DedupKind): postgres.PendingQuery<postgres.Row[]> {
  return sql.unsafe(`${literal(dedupPrefix(kind))}::text`);
}


/** History reads and appends. History is append-only: rows are never updated or deleted. */
import { base64Array, type Queryable } from "./db.js";

export interface StoredEvent {
  sequence: number;
  event: Uint8Array;
  createdAt: Date;
}

export interface NewEvent {
  kind: string;
  event: Uint8Array;
  dedupKey?: string | undefined;
}

/** A page of a run's history after `afterSequence`, in order (primary key range scan). */
export async function readHistory(
  sql: Queryable,
  runId: string,
  afterSequence: number,
  limit: number,
): Promise<StoredEvent[]> {
  const rows = await sql<{ sequence: number; event: Buffer; created_at: Date }[]>`
    select sequence, event, created_at from dex.history_events
    where run_id = ${runId} and sequence > ${afterSequence}
    order by sequence limit ${limit}`;
  return rows.map((r) => ({ sequence: r.sequence, event: r.event, createdAt: r.created_at }));
}

/** Whole histories of several runs in one query (for the workflow tasks of one poll). */
export async function readHistories(sql: Queryable, runIds: string[]): Promise<Map<string, StoredEvent[]>> {
  const byRun = new Map<string, StoredEvent[]>();
  if (runIds.length === 0) return byRun;
  const rows = await sql<{ run_id: string; sequence: number; event: Buffer; created_at: Date }[]>`
    select run_id, sequence, event, created_at from dex.history_events
    where run_id = any(${runIds}::uuid[])
    order by run_id, sequence`;
  for (const r of rows) {
    let list = byRun.get(r.run_id);
    if (!list) byRun.set(r.run_id, (list = []));
    list.push({ sequence: r.sequence, event: r.event, createdAt: r.created_at });
  }
  return byRun;
}

export interface BlockToAppend {
  runId: string;
  afterSequence: number;
  inboxIds: readonly number[];
  events: NewEvent[];
}

/** Bytes of the block's new events (the moved inbox rows are counted by the statement). */
export function newEventBytes(block: BlockToAppend): number {
  return block.events.reduce((sum, e) => sum + e.event.byteLength, 0);
}

/**
 * The CTEs that append one workflow task's block: `moved` (the inbox rows it
 * was handed, deleted from the inbox), `moved_history` (them, first, in id
 * order; returns each one's size) and `new_history` (the marker and the
 * command events). Sequences start at `afterSequence + 1` with no gap; the
 * primary key (run_id, sequence) rejects any overlap, and the dedup index
 * rejects a second result for the same activity call or a reused seq. The
 * caller holds the run row lock, so nobody else appends concurrently, and
 * keeps runs.history_size in step (appendBlock, or finishWorkflowTask in
 * store/completion.ts, which appends in its own statement).
 */
export function appendBlockCtes(tx: Queryable, block: BlockToAppend) {
  const { runId, afterSequence, inboxIds, events } = block;
  return tx`
    moved as (
      delete from dex.inbox where run_id = ${runId} and id = any(${inboxIds as number[]}::bigint[])
      returning id, kind, event, dedup_key, created_at
    ), moved_history as (
      insert into dex.history_events (run_id, sequence, kind, event, dedup_key, created_at)
      select ${runId}, ${afterSequence} + row_number() over (order by id), kind, event, dedup_key, created_at
      from moved
      returning octet_length(event) as size
    ), new_history as (
      insert into dex.history_events (run_id, sequence, kind, event, dedup_key)
      select ${runId}, ${afterSequence + inboxIds.length} + ord, kind, decode(event, 'base64'), dedup_key
      from unnest(${events.map((e) => e.kind)}::text[], ${base64Array(events.map((e) => e.event))}::text[],
                  ${events.map((e) => e.dedupKey ?? null)}::text[]) with ordinality as u(kind, event, dedup_key, ord)
    )`;
}

/** Appends one workflow task's block (appendBlockCtes) and keeps runs.history_size in step. Returns how many inbox rows moved. */
export async function appendBlock(tx: Queryable, block: BlockToAppend): Promise<{ moved: number }> {
  const [row] = await tx<{ moved: number }[]>`
    with ${appendBlockCtes(tx, block)}, sized as (
      update dex.runs
      set history_size = history_size + coalesce((select sum(size) from moved_history), 0) + ${newEventBytes(block)}
      where id = ${block.runId}
    )
    select (select count(*)::int from moved_history) as moved`;
  return { moved: row?.moved ?? 0 };
}

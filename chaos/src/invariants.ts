/**
 * The invariant checker, run against the database after every scenario has
 * settled. It reads dex's own tables (migrations/*.sql) and the chaos
 * process's record of activity executions (chaos.executions), never the
 * server's API: a check that went through the code under test could share its bugs.
 *
 * Each check answers PASS/FAIL with counts, and lists up to a few violations
 * with the ids needed to look at them (`pnpm dex workflow history <run>`).
 */
import { fromBinary } from "@bufbuild/protobuf";
import type postgres from "postgres";
import { HistoryEventSchema } from "@dex/proto";
import { checkChains, type ChainRecord } from "./invariants-chains.js";

export interface Check {
  name: string;
  ok: boolean;
  /** Counts: what was checked and found. */
  detail: string;
  /** The first violations, with ids. */
  violations: string[];
}

export type RunStatus = "COMPLETED" | "FAILED" | "CANCELLED" | "TERMINATED" | "CONTINUED_AS_NEW" | "TIMED_OUT";

export interface Expectations {
  /** Every run the scenario started, and the status it must have ended in. */
  runs: Map<string, RunStatus>;
  /**
   * A lease may stay in place this long past its end before it counts as left
   * behind: the lease reaper retries expired activity attempts within about a second.
   */
  leaseSlackMs?: number;
  /**
   * Retention was on (scenarios/retention.ts): a started run may be missing from dex.runs if
   * chaos.deleted_runs recorded its deletion, and every deletion there is held to the retention.
   */
  retentionSeconds?: number;
  /** Continue-as-new chains and what their callers heard (scenarios/chains.ts): held to invariants-chains.ts. */
  chains?: ChainRecord[];
}

const OPEN = ["CREATED", "RUNNING"];
const SHOWN = 5;

/** Collects violations for one check, keeping the first few for the report. */
class Tally {
  count = 0;
  readonly shown: string[] = [];
  add(violation: string): void {
    this.count++;
    if (this.shown.length < SHOWN) this.shown.push(violation);
  }
  check(name: string, detail: string): Check {
    const more = this.count > this.shown.length ? [`... and ${this.count - this.shown.length} more`] : [];
    return { name, ok: this.count === 0, detail: this.count === 0 ? detail : `${detail}; ${this.count} violation(s)`, violations: [...this.shown, ...more] };
  }
}

interface RunRow {
  id: string;
  instance_id: string;
  status: string;
  history_length: number;
}

/** What one run's history says, gathered in one pass over its events. */
interface RunHistory {
  sequences: number[];
  scheduled: Set<number>;
  /** activity_completed / activity_failed per seq; attempt of each. */
  outcomes: Map<number, number[]>;
  timerFireUs: Map<number, bigint>;
  /** timer_fired per seq: when each reached the inbox (µs since epoch). */
  timerFiredUs: Map<number, bigint[]>;
  timerCancelled: Set<number>;
}

export async function checkInvariants(db: postgres.Sql, expect: Expectations): Promise<Check[]> {
  // One snapshot for every read: a run still moving (a violation of its own) must not
  // make its row and its history disagree only because they were read at different times.
  return db.begin("isolation level repeatable read read only", async (sql) => {
    const runs = await sql<RunRow[]>`select id, instance_id, status, history_length from dex.runs`;
    const byId = new Map(runs.map((r) => [r.id, r]));
    const histories = await readHistories(sql);
    const deleted = expect.retentionSeconds === undefined ? [] : await readDeletedRuns(sql);
    const deletedIds = new Set(deleted.map((d) => d.run_id));
    const executions = await readExecutions(sql);
    // A deleted run's executions have no history left to be held against.
    for (const key of executions.keys()) if (deletedIds.has(key.split(":")[0]!)) executions.delete(key);
    return [
      terminalStatus(runs, expect, deletedIds),
      historyContiguous(runs, histories),
      ...(expect.retentionSeconds === undefined ? [] : [retentionDeletedOnlyExpired(deleted, expect.retentionSeconds)]),
      await nothingOrphaned(sql),
      ...activities(byId, histories, executions),
      await oneOpenRunPerInstance(sql),
      await noLeftBehindLeases(sql, expect.leaseSlackMs ?? 3_000),
      timersNeverEarly(byId, histories),
      await runTimeoutsFiredOnce(sql),
      ...(expect.chains ? await checkChains(sql, expect.chains) : []),
    ];
  });
}

type Tx = postgres.TransactionSql;

function terminalStatus(runs: RunRow[], expect: Expectations, deleted: Set<string>): Check {
  const tally = new Tally();
  const byId = new Map(runs.map((r) => [r.id, r]));
  const counts = new Map<string, number>();
  for (const [id, status] of expect.runs) {
    const run = byId.get(id);
    if (!run && deleted.has(id)) counts.set("deleted by retention", (counts.get("deleted by retention") ?? 0) + 1);
    else if (!run) tally.add(`run ${id}: started (the start answered) but not in dex.runs`);
    else if (run.status !== status) tally.add(`run ${id} (${run.instance_id}): expected ${status}, is ${run.status}`);
    else counts.set(status, (counts.get(status) ?? 0) + 1);
  }
  for (const run of runs) {
    if (!expect.runs.has(run.id)) tally.add(`run ${run.id} (${run.instance_id}, ${run.status}) exists but no start returned it`);
  }
  const reached = [...counts].map(([status, n]) => `${n} ${status}`).join(", ") || "none";
  return tally.check("every run reached its expected terminal status", `${expect.runs.size} runs expected, ${runs.length} in dex.runs; ${reached}`);
}

function historyContiguous(runs: RunRow[], histories: Map<string, RunHistory>): Check {
  const tally = new Tally();
  let events = 0;
  for (const run of runs) {
    const sequences = histories.get(run.id)?.sequences ?? [];
    events += sequences.length;
    const gap = sequences.findIndex((s, i) => s !== i + 1);
    if (gap >= 0) tally.add(`run ${run.id}: event #${gap + 1} has sequence ${sequences[gap]} (gap or duplicate)`);
    else if (sequences.length !== run.history_length) tally.add(`run ${run.id}: ${sequences.length} events but history_length ${run.history_length}`);
  }
  const ids = new Set(runs.map((r) => r.id));
  for (const id of histories.keys()) if (!ids.has(id)) tally.add(`history of run ${id}, which has no row in dex.runs`);
  return tally.check("history sequences contiguous from 1, no duplicates", `${runs.length} runs, ${events} events`);
}

function activities(runs: Map<string, RunRow>, histories: Map<string, RunHistory>, executions: Map<string, Set<number>>): Check[] {
  const outcomes = new Tally();
  const ran = new Tally();
  let scheduled = 0;
  let executionsTotal = 0;
  for (const [runId, history] of histories) {
    const status = runs.get(runId)?.status ?? "?";
    for (const seq of history.scheduled) {
      scheduled++;
      const results = history.outcomes.get(seq) ?? [];
      const attempts = executions.get(`${runId}:${seq}`);
      executionsTotal += attempts?.size ?? 0;
      // A run that ended some other way (terminated, cancelled, failed) may leave calls without outcome.
      if (results.length > 1) outcomes.add(`run ${runId} seq ${seq}: ${results.length} outcome events`);
      else if (results.length === 0 && (status === "COMPLETED" || OPEN.includes(status))) outcomes.add(`run ${runId} (${status}) seq ${seq}: scheduled, no outcome`);
      if (results.length > 0 && !attempts) ran.add(`run ${runId} seq ${seq}: an outcome in history but no execution recorded`);
      for (const attempt of results) {
        // attempt 0: failed before any attempt ran (its queue did not exist).
        if (attempt > 0 && attempts && !attempts.has(attempt)) ran.add(`run ${runId} seq ${seq}: outcome of attempt ${attempt}, executions recorded: ${[...attempts].join(",")}`);
      }
    }
    for (const seq of history.outcomes.keys()) if (!history.scheduled.has(seq)) outcomes.add(`run ${runId} seq ${seq}: outcome without activity_scheduled`);
  }
  for (const key of executions.keys()) {
    const [runId, seq] = key.split(":");
    if (!histories.get(runId!)?.scheduled.has(Number(seq))) ran.add(`run ${runId} seq ${seq}: executed but never scheduled`);
  }
  return [
    outcomes.check("each scheduled activity has exactly one completed/failed event", `${scheduled} activities scheduled`),
    ran.check("each activity outcome comes from a recorded execution of that attempt", `${scheduled} activities, ${executionsTotal} distinct attempts executed`),
  ];
}

async function oneOpenRunPerInstance(sql: Tx): Promise<Check> {
  const tally = new Tally();
  const rows = await sql<{ instance_id: string; n: number }[]>`
    select instance_id, count(*)::int as n from dex.runs where status in ('CREATED', 'RUNNING') group by instance_id having count(*) > 1`;
  for (const row of rows) tally.add(`instance ${row.instance_id}: ${row.n} open runs`);
  const [row] = await sql<{ instances: number }[]>`select count(distinct instance_id)::int as instances from dex.runs`;
  return tally.check("no instance id has two non-terminal runs", `${row!.instances} instance ids`);
}

interface DeletedRun {
  run_id: string;
  status: string;
  ended_at: Date | null;
  kept_ms: number | null;
  open_children: number;
}

/** chaos.deleted_runs: each dex.runs row deleted, as it was, recorded by a trigger in the deleting transaction. */
async function readDeletedRuns(sql: Tx): Promise<DeletedRun[]> {
  return sql<DeletedRun[]>`
    select run_id, status, ended_at, (extract(epoch from deleted_at - ended_at) * 1000)::float8 as kept_ms, open_children
    from chaos.deleted_runs`;
}

/**
 * Retention deleted only ended runs, each at least the retention after it
 * ended (both times from the database's clock, each its transaction's now()),
 * and never the parent of an open run.
 */
function retentionDeletedOnlyExpired(deleted: DeletedRun[], retentionSeconds: number): Check {
  const tally = new Tally();
  let shortest: number | undefined;
  for (const d of deleted) {
    if (OPEN.includes(d.status) || d.ended_at === null) tally.add(`run ${d.run_id}: deleted while ${d.status}`);
    else if (d.kept_ms! < retentionSeconds * 1000) tally.add(`run ${d.run_id}: deleted ${d.kept_ms!.toFixed(0)} ms after it ended, before its ${retentionSeconds} s retention`);
    if (d.open_children > 0) tally.add(`run ${d.run_id}: deleted with ${d.open_children} open child run(s)`);
    if (d.kept_ms !== null) shortest = Math.min(shortest ?? d.kept_ms, d.kept_ms);
  }
  const kept = shortest === undefined ? "" : `, shortest time kept after the end ${(shortest / 1000).toFixed(2)} s`;
  return tally.check(`retention deleted only ended runs past their ${retentionSeconds} s retention`, `${deleted.length} runs deleted${kept}`);
}

/** Rows of a run that does not exist: half a deletion, or a write that raced one. */
async function nothingOrphaned(sql: Tx): Promise<Check> {
  const tally = new Tally();
  const orphans = await sql<{ what: string; run_id: string; n: number }[]>`
    select what, run_id, count(*)::int as n from (
      select 'inbox row' as what, run_id from dex.inbox
      union all select 'timer', run_id from dex.timers
      union all select 'workflow task', run_id from dex.workflow_tasks
      union all select 'activity task', run_id from dex.activity_tasks
      union all select 'history event', run_id from dex.history_events
    ) owned where not exists (select 1 from dex.runs r where r.id = owned.run_id)
    group by what, run_id`;
  for (const o of orphans) tally.add(`${o.n} ${o.what}(s) of run ${o.run_id}, which has no row in dex.runs`);
  return tally.check("no history, inbox, timer or task row without its run", `${orphans.length} orphaned groups`);
}

/**
 * Leases that ended more than `slackMs` ago and are still on their task row:
 * work held by a worker that is gone. Also anything left for a run that ended
 * (tasks, inbox rows, timers), which no worker would ever pick up.
 */
async function noLeftBehindLeases(sql: Tx, slackMs: number): Promise<Check> {
  const tally = new Tally();
  const stale = await sql<{ type: string; run_id: string; seq: number | null; worker_id: string | null; late_ms: number }[]>`
    select 'workflow' as type, run_id, null::int as seq, worker_id, (extract(epoch from now() - leased_until) * 1000)::int as late_ms
    from dex.workflow_tasks where leased_until is not null and leased_until < now() - ${slackMs} * interval '1 millisecond'
    union all
    select 'activity', run_id, seq, worker_id, (extract(epoch from now() - leased_until) * 1000)::int
    from dex.activity_tasks where leased_until is not null and leased_until < now() - ${slackMs} * interval '1 millisecond'`;
  for (const s of stale) tally.add(`${s.type} task of run ${s.run_id}${s.seq === null ? "" : ` seq ${s.seq}`}: leased by ${s.worker_id}, lease ended ${s.late_ms} ms ago`);
  const leftovers = await sql<{ what: string; run_id: string; status: string }[]>`
    select 'workflow task' as what, r.id as run_id, r.status from dex.workflow_tasks t join dex.runs r on r.id = t.run_id where r.status not in ('CREATED', 'RUNNING')
    union all select 'activity task', r.id, r.status from dex.activity_tasks t join dex.runs r on r.id = t.run_id where r.status not in ('CREATED', 'RUNNING')
    union all select 'inbox row', r.id, r.status from dex.inbox i join dex.runs r on r.id = i.run_id where r.status not in ('CREATED', 'RUNNING')
    union all select 'timer', r.id, r.status from dex.timers t join dex.runs r on r.id = t.run_id where r.status not in ('CREATED', 'RUNNING')`;
  for (const l of leftovers) tally.add(`${l.what} left for run ${l.run_id}, which is ${l.status}`);
  const [counts] = await sql<{ wf: number; act: number }[]>`
    select (select count(*)::int from dex.workflow_tasks) as wf, (select count(*)::int from dex.activity_tasks) as act`;
  return tally.check("no task left leased past its lease (nor left for an ended run)", `${counts!.wf} workflow and ${counts!.act} activity task rows remain`);
}

/**
 * A run timeout fires once and only on a run it ended: every TIMED_OUT run has
 * exactly one run_timed_out event, its last; no run of another status has one;
 * and no run_timeout timer is left due long after its deadline on an open run.
 */
async function runTimeoutsFiredOnce(sql: Tx): Promise<Check> {
  const tally = new Tally();
  const rows = await sql<{ id: string; status: string; history_length: number; events: number; last_seq: number | null }[]>`
    select r.id, r.status, r.history_length, count(h.sequence)::int as events, max(h.sequence)::int as last_seq
    from dex.runs r left join dex.history_events h on h.run_id = r.id and h.kind = 'run_timed_out'
    where r.status = 'TIMED_OUT' or exists (select 1 from dex.history_events e where e.run_id = r.id and e.kind = 'run_timed_out')
    group by r.id, r.status, r.history_length`;
  for (const r of rows) {
    if (r.status !== "TIMED_OUT") tally.add(`run ${r.id} (${r.status}) has a run_timed_out event`);
    else if (r.events !== 1) tally.add(`run ${r.id} (TIMED_OUT) has ${r.events} run_timed_out events`);
    else if (r.last_seq !== r.history_length) tally.add(`run ${r.id} (TIMED_OUT): run_timed_out is event ${r.last_seq} of ${r.history_length}`);
  }
  const overdue = await sql<{ run_id: string; late_ms: number }[]>`
    select t.run_id, (extract(epoch from now() - t.fire_at) * 1000)::int as late_ms
    from dex.timers t where t.kind = 'run_timeout' and t.fire_at < now() - interval '30 seconds'`;
  for (const o of overdue) tally.add(`run ${o.run_id}: its run timeout is ${o.late_ms} ms overdue and has not fired`);
  return tally.check("each run timeout ends its run once, TIMED_OUT, as its last event", `${rows.length} timed-out runs`);
}

function timersNeverEarly(runs: Map<string, RunRow>, histories: Map<string, RunHistory>): Check {
  const tally = new Tally();
  let fired = 0;
  let minMarginUs: bigint | undefined;
  for (const [runId, history] of histories) {
    for (const [seq, firedAt] of history.timerFiredUs) {
      const due = history.timerFireUs.get(seq);
      if (due === undefined) {
        tally.add(`run ${runId} seq ${seq}: timer_fired without timer_started`);
        continue;
      }
      if (firedAt.length > 1) tally.add(`run ${runId} seq ${seq}: fired ${firedAt.length} times`);
      for (const at of firedAt) {
        fired++;
        const margin = at - due;
        if (minMarginUs === undefined || margin < minMarginUs) minMarginUs = margin;
        if (margin < 0n) tally.add(`run ${runId} seq ${seq}: fired ${-margin} µs before its fire_time`);
      }
    }
    if (runs.get(runId)?.status === "COMPLETED") {
      for (const seq of history.timerFireUs.keys()) {
        if (!history.timerFiredUs.has(seq) && !history.timerCancelled.has(seq)) tally.add(`run ${runId} (COMPLETED) seq ${seq}: timer neither fired nor cancelled`);
      }
    }
  }
  const margin = minMarginUs === undefined ? "" : `, smallest margin fired - fire_time ${(Number(minMarginUs) / 1000).toFixed(1)} ms`;
  return tally.check("no timer fired before its due time (nor twice)", `${fired} timers fired${margin}`);
}

/** One pass over dex.history_events, decoding only the events the checks read. */
async function readHistories(sql: Tx): Promise<Map<string, RunHistory>> {
  const histories = new Map<string, RunHistory>();
  const decoded = new Set(["activity_scheduled", "activity_completed", "activity_failed", "timer_started", "timer_fired", "timer_cancelled"]);
  // created_at in µs: a moved inbox row keeps its created_at, so timer_fired's is when the timer fired.
  const cursor = sql<{ run_id: string; sequence: number; kind: string; event: Buffer; at_us: string }[]>`
    select run_id, sequence, kind, event, (extract(epoch from created_at) * 1000000)::bigint::text as at_us
    from dex.history_events order by run_id, sequence`.cursor(2_000);
  for await (const rows of cursor) {
    for (const row of rows) {
      let h = histories.get(row.run_id);
      if (!h) {
        h = { sequences: [], scheduled: new Set(), outcomes: new Map(), timerFireUs: new Map(), timerFiredUs: new Map(), timerCancelled: new Set() };
        histories.set(row.run_id, h);
      }
      h.sequences.push(row.sequence);
      if (!decoded.has(row.kind)) continue;
      const attributes = fromBinary(HistoryEventSchema, row.event).attributes;
      switch (attributes.case) {
        case "activityScheduled":
          h.scheduled.add(attributes.value.seq);
          break;
        case "activityCompleted":
        case "activityFailed":
          h.outcomes.set(attributes.value.seq, [...(h.outcomes.get(attributes.value.seq) ?? []), attributes.value.attempt]);
          break;
        case "timerStarted": {
          const t = attributes.value.fireTime;
          h.timerFireUs.set(attributes.value.seq, t ? t.seconds * 1_000_000n + BigInt(Math.floor(t.nanos / 1000)) : 0n);
          break;
        }
        case "timerFired":
          h.timerFiredUs.set(attributes.value.seq, [...(h.timerFiredUs.get(attributes.value.seq) ?? []), BigInt(row.at_us)]);
          break;
        case "timerCancelled":
          h.timerCancelled.add(attributes.value.seq);
          break;
      }
    }
  }
  return histories;
}

/** Attempts executed per call, keyed "run:seq". */
async function readExecutions(sql: Tx): Promise<Map<string, Set<number>>> {
  const rows = await sql<{ run_id: string; seq: number; attempts: number[] }[]>`
    select run_id, seq, array_agg(distinct attempt) as attempts from chaos.executions group by run_id, seq`;
  return new Map(rows.map((r) => [`${r.run_id}:${r.seq}`, new Set(r.attempts)]));
}

/**
 * The activity tasks of one run under test by activity-fencing-run.ts: a model per activity
 * (token-fencing.model.ts ActivityModel) and the tokens handed out for it, a snapshot of
 * everything a call could write (every activity row of the run, its inbox, its history) read in
 * one statement on the database clock, and the checks of a snapshot against the models. The
 * reaper runs on its own: every check first asks reaped() whether it timed an attempt out
 * meanwhile, and if so whether it was allowed to and did it right.
 */
import { expect } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { HistoryEventSchema, PayloadSchema, type ActivityTask } from "@dex/proto";
import { ActivityModel, leaseIdOf } from "../token-fencing.model.js";
import { fromJson, type Harness } from "../helpers.js";
import { byteaHex, cover, expectOutcome, expectTimeoutFailure, lastFailure, micros } from "./fencing-calls.js";

/** What an activity action could have written; times in µs, database clock. */
export interface ActivitySnapshot {
  nowUs: number;
  /** Activity task rows by seq (every column), absent once the task is gone. */
  tasks: Record<string, Record<string, unknown>>;
  leasedUntilUs: Record<string, number | null>;
  inbox: Array<{ id: number; kind: string; event: string; dedup_key: string | null }>;
  /** The run's history rows (sequence, kind, bytes). */
  history: unknown;
}

export class ActivityFencingState {
  readonly models: ActivityModel[];
  readonly tokens: Uint8Array[][];
  runId = "";
  /** The run's history once its activities were scheduled: nothing they do may change it. */
  baseline: unknown;

  constructor(
    private readonly h: Harness,
    activities: number,
    maximumAttempts: number,
    private readonly heartbeatMs: number,
  ) {
    this.models = Array.from({ length: activities }, () => new ActivityModel(maximumAttempts));
    this.tokens = Array.from({ length: activities }, () => []);
  }

  seqOf(i: number): number {
    return i + 1;
  }

  row(i: number, s: ActivitySnapshot): Record<string, unknown> | undefined {
    return s.tasks[String(this.seqOf(i))];
  }

  describe(): string {
    return this.models
      .map((m, i) => `#${i}: ${m.phase} attempt ${m.attempt} token ${m.current ?? "-"}/${this.tokens[i]!.length} outcome ${JSON.stringify(m.outcome)}`)
      .join("; ");
  }

  async snap(checkHistory = true): Promise<ActivitySnapshot> {
    const [row] = await this.h.sql<
      {
        now_us: string;
        tasks: Array<Record<string, unknown>> | null;
        leases: Array<{ seq: number; us: string | null }> | null;
        inbox: ActivitySnapshot["inbox"];
        history: unknown;
      }[]
    >`
      select (extract(epoch from now()) * 1000000)::bigint::text as now_us,
             (select jsonb_agg(to_jsonb(t) order by t.seq) from dex.activity_tasks t where t.run_id = ${this.runId}) as tasks,
             (select jsonb_agg(jsonb_build_object('seq', t.seq, 'us', (extract(epoch from t.leased_until) * 1000000)::bigint::text))
              from dex.activity_tasks t where t.run_id = ${this.runId}) as leases,
             coalesce((select jsonb_agg(jsonb_build_object('id', i.id, 'kind', i.kind, 'event', encode(i.event, 'hex'),
                                                           'dedup_key', i.dedup_key) order by i.id)
                       from dex.inbox i where i.run_id = ${this.runId}), '[]'::jsonb) as inbox,
             (select jsonb_agg(jsonb_build_object('sequence', e.sequence, 'kind', e.kind, 'event', encode(e.event, 'hex')) order by e.sequence)
              from dex.history_events e where e.run_id = ${this.runId}) as history`;
    // Nothing an activity does reaches history before the run's next workflow task completes.
    if (checkHistory) expect(row!.history, "the run's history changed while its activities ran").toEqual(this.baseline);
    const tasks: ActivitySnapshot["tasks"] = {};
    for (const t of row!.tasks ?? []) tasks[String(t.seq)] = t;
    const leasedUntilUs: ActivitySnapshot["leasedUntilUs"] = {};
    for (const l of row!.leases ?? []) leasedUntilUs[String(l.seq)] = l.us === null ? null : Number(l.us);
    return { nowUs: Number(row!.now_us), tasks, leasedUntilUs, inbox: row!.inbox, history: row!.history };
  }

  currentLeaseId(i: number): string {
    return leaseIdOf(this.tokens[i]![this.models[i]!.current!]!);
  }

  /** A task handed out to `workerId` (eagerly or by a poll): the model's next attempt, with the lease the row holds. */
  claimed(i: number, task: ActivityTask, before: ActivitySnapshot, after: ActivitySnapshot, workerId: string): void {
    const model = this.models[i]!;
    cover(`claim: attempt ${Math.min(task.attempt, 4)}${task.attempt >= 4 ? "+" : ""}`);
    expect([task.runId, task.seq, task.activityName]).toEqual([this.runId, this.seqOf(i), "act"]);
    expect(task.attempt, "the attempt number").toBe(model.attempt + 1);
    expect(fromJson(task.heartbeatDetails), "the next attempt receives the last accepted heartbeat's details").toEqual(model.details);
    const deadline = micros(task.leaseDeadline!);
    this.expectLeaseDeadline(deadline, before, after);
    this.tokens[i]!.push(task.taskToken);
    model.claimed(this.tokens[i]!.length - 1, deadline);
    if (!this.reaped(i, after)) {
      const row = this.row(i, after)!;
      expect([row.attempt, row.worker_id], "the row's attempt and worker").toEqual([model.attempt, workerId]);
      this.takeLeaseEnd(i, after, deadline);
    }
  }

  /** A lease handed out or extended between two snapshots runs the heartbeat timeout from then. */
  expectLeaseDeadline(deadlineUs: number, before: ActivitySnapshot, after: ActivitySnapshot): void {
    expect(deadlineUs).toBeGreaterThanOrEqual(Math.floor((before.nowUs + this.heartbeatMs * 1000) / 1000) * 1000);
    expect(deadlineUs).toBeLessThanOrEqual(after.nowUs + this.heartbeatMs * 1000);
  }

  /** The model's lease end is the row's, which the answer's deadline (ms precision) rounds down. */
  takeLeaseEnd(i: number, s: ActivitySnapshot, deadlineUs: number): void {
    const model = this.models[i]!;
    model.leaseEndUs = s.leasedUntilUs[String(this.seqOf(i))]!;
    expect(Math.floor(model.leaseEndUs / 1000) * 1000).toBe(deadlineUs);
  }

  /**
   * If activity i's row no longer carries the model's current lease, the reaper timed the attempt
   * out: checks that it was allowed to (the lease had ended) and did it right, and applies it to
   * the model. Returns whether it happened.
   */
  reaped(i: number, s: ActivitySnapshot): boolean {
    const model = this.models[i]!;
    const row = this.row(i, s);
    if (model.phase !== "leased" || (row?.lease_id ?? null) === this.currentLeaseId(i)) return false;
    expect(model.leaseEndUs, "an attempt was timed out before its lease ended").toBeLessThanOrEqual(s.nowUs);
    const attempt = model.attempt;
    cover(`reaper: ${model.retries("timeout") ? "retry" : "final"}`);
    if (model.timedOut()) {
      expect(row, "a timed-out attempt with attempts left keeps its task").toBeDefined();
      expect([row!.lease_id, row!.attempt], "a timed-out attempt's lease is dropped, its attempt counted").toEqual([null, attempt]);
      expectTimeoutFailure(row);
      expect(this.outcomeRows(i, s), "a retried attempt leaves no outcome").toEqual([]);
    } else {
      expect(row, "the last attempt timed out: the task is gone").toBeUndefined();
      this.expectOutcomeInInbox(i, s);
    }
    return true;
  }

  /** reaped() for every activity; returns the seqs the reaper timed out. */
  reapedAll(s: ActivitySnapshot): Set<string> {
    const seqs = new Set<string>();
    for (let i = 0; i < this.models.length; i++) if (this.reaped(i, s)) seqs.add(String(this.seqOf(i)));
    return seqs;
  }

  private outcomeRows(i: number, s: ActivitySnapshot) {
    return s.inbox.filter((r) => r.dedup_key === `activity-result:${this.seqOf(i)}`);
  }

  /** Activity i's outcome is the model's, once in the inbox, and its task is gone. */
  expectOutcomeInInbox(i: number, s: ActivitySnapshot): void {
    const seq = this.seqOf(i);
    const outcome = this.models[i]!.outcome!;
    expect(this.row(i, s), "an activity with its outcome has no task").toBeUndefined();
    const rows = this.outcomeRows(i, s);
    expect(rows.map((r) => r.kind), `one outcome of activity ${seq} in the inbox`).toEqual([outcome.kind === "completed" ? "activity_completed" : "activity_failed"]);
    expectOutcome(fromBinary(HistoryEventSchema, Buffer.from(rows[0]!.event, "hex")), seq, outcome);
  }

  /** The inbox holds exactly the outcomes the models have, once each. */
  expectInbox(s: ActivitySnapshot): void {
    const withOutcome = this.models.flatMap((m, i) => (m.phase === "done" ? [`activity-result:${this.seqOf(i)}`] : []));
    expect(s.inbox.map((r) => r.dedup_key).sort(), "the inbox holds the outcomes the models have, once each").toEqual(withOutcome.sort());
    for (let i = 0; i < this.models.length; i++) if (this.models[i]!.phase === "done") this.expectOutcomeInInbox(i, s);
  }

  /** A rejected call changed nothing, but what the reaper did meanwhile (checked by reaped()). */
  unchanged(before: ActivitySnapshot, after: ActivitySnapshot): void {
    const reaped = this.reapedAll(after);
    this.expectUntouched(reaped, reaped, before, after, "a rejected call changed an activity task");
    if (reaped.size === 0) expect(after.inbox, "a rejected call changed the inbox").toEqual(before.inbox);
    this.expectInbox(after);
  }

  /** An accepted call on activity i changed only activity i (and the inbox, checked against the models). */
  unchangedButFor(i: number, before: ActivitySnapshot, after: ActivitySnapshot): void {
    const reaped = this.reapedAll(after);
    const changed = new Set(reaped).add(String(this.seqOf(i)));
    this.expectUntouched(changed, reaped, before, after, "an accepted call changed another activity's task");
    this.expectInbox(after);
  }

  /** A call with the current token answered NOT_FOUND: only right if the reaper got there first. */
  lostToReaper(i: number, code: string, before: ActivitySnapshot, after: ActivitySnapshot, what: string): void {
    expect(code, `${what} with the current token`).toBe("NOT_FOUND");
    expect(this.models[i]!.leaseEndUs, `${what} with the current token was refused while its lease was live`).toBeLessThanOrEqual(after.nowUs);
    expect(this.reaped(i, after), `${what} with the current token was refused, and the reaper had not timed the attempt out`).toBe(true);
    const reaped = this.reapedAll(after).add(String(this.seqOf(i)));
    this.expectUntouched(reaped, reaped, before, after, `${what} lost to the reaper changed an activity task`);
    this.expectInbox(after);
  }

  /**
   * The rows not in `changed` are as they were; a row the reaper timed out keeps its heartbeat
   * details (it writes only the lease, the failure and the visibility).
   */
  private expectUntouched(changed: Set<string>, reaped: Set<string>, before: ActivitySnapshot, after: ActivitySnapshot, message: string): void {
    const strip = (s: ActivitySnapshot) => Object.fromEntries(Object.entries(s.tasks).filter(([seq]) => !changed.has(seq)));
    expect(strip(after), message).toEqual(strip(before));
    for (const seq of reaped) {
      if (after.tasks[seq]) expect(after.tasks[seq].heartbeat_details, "the reaper keeps the heartbeat details").toEqual(before.tasks[seq]?.heartbeat_details);
    }
  }

  /** An accepted retryable failure: the task waits for its next attempt, the lease dropped, the failure kept. */
  expectRetryScheduled(i: number, before: ActivitySnapshot, after: ActivitySnapshot, attempt: number, message: string): void {
    const row = this.row(i, after);
    expect(row, "a retried activity keeps its task").toBeDefined();
    expect(row!.lease_id, "a failed attempt's lease is dropped").toBeNull();
    expect(row!.attempt).toBe(attempt);
    expect(row!.heartbeat_details, "a failure keeps the last accepted heartbeat's details").toEqual(this.row(i, before)?.heartbeat_details);
    expect(lastFailure(row).message).toBe(message);
    expect(this.outcomeRows(i, after), "a retried attempt leaves no outcome").toEqual([]);
  }

  /** An accepted heartbeat: the row holds the new lease and the details. */
  expectHeartbeatStored(i: number, after: ActivitySnapshot, deadlineUs: number, details: string): void {
    if (this.reaped(i, after)) return;
    this.takeLeaseEnd(i, after, deadlineUs);
    const row = this.row(i, after)!;
    expect(row.attempt).toBe(this.models[i]!.attempt);
    const hex = byteaHex(row.heartbeat_details);
    expect(fromJson(hex === undefined ? undefined : fromBinary(PayloadSchema, Buffer.from(hex, "hex"))), "the heartbeat's details are stored").toBe(details);
  }
}

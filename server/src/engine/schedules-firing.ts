/**
 * What one firing does, inside the transaction that holds the schedule's row
 * lock (store/schedules.ts explains the locking): the overlap policy against
 * the run the schedule started last, the start itself through the one start
 * statement (store/runs.ts insertRun, with engine/start.ts newRun), buffered
 * firings, and the due time the row gets next. The caller saves the state
 * in the same transaction, so the run and the advanced state commit together.
 */
import { DexError } from "@dex/proto";
import type { TransactionSql } from "../store/db.js";
import { lockRun } from "../store/completion-locks.js";
import { insertRun } from "../store/runs.js";
import { runIsOpen, type ActionEntry, type BufferedFiring, type ScheduleRecord, type ScheduleState, type SkipEntry } from "../store/schedules.js";
import type { Engine } from "./context.js";
import type { Effects } from "./effects.js";
import { decodePayload } from "./events.js";
import { cancelRun, terminateLocked, terminateRun, terminationRecords } from "./lifecycle.js";
import { QueueType } from "./model.js";
import { cancelRuns } from "./relatives.js";
import { CompiledSpec, jitterOf, scheduledInstanceId, type ScheduleSpec } from "./schedules-spec.js";
import { newRun, ReusePolicy } from "./start.js";

export const OverlapPolicy = {
  SKIP: "skip",
  BUFFER_ONE: "buffer_one",
  BUFFER_ALL: "buffer_all",
  CANCEL_OTHER: "cancel_other",
  TERMINATE_OTHER: "terminate_other",
  ALLOW_ALL: "allow_all",
} as const;
export type OverlapPolicy = (typeof OverlapPolicy)[keyof typeof OverlapPolicy];

export type SkipReason = SkipEntry["reason"];
export type FiringKind = BufferedFiring["kind"];

/** The workflow a schedule starts, as stored (dex.schedules.action; the input is its own column). */
export interface ScheduleActionDef {
  workflowName: string;
  taskQueue: string;
  labels: Record<string, string>;
  priority: number;
}

/** How many recent actions and skips describe keeps. */
export const RECENT_LIMIT = 10;
/** BUFFER_ALL keeps at most this many firings waiting; later ones are skipped. */
export const MAX_BUFFERED = 1_000;
/**
 * How soon a buffered firing looks again whether the open run ended. Only a
 * schedule with a firing waiting on an open run is looked at this often; an
 * idle schedule is looked at only when it is due.
 */
export const BUFFER_RECHECK_MS = 1_000;
/** Nominal times handled per transaction; an outage longer than this is caught up over several. */
export const MAX_TIMES_PER_PASS = 10_000;

export interface FireOutcome {
  runId?: string;
  /** A new run was started (false for a run a previous attempt started: same request id). */
  started: boolean;
  buffered: boolean;
  skipped?: SkipReason;
}

/** One schedule row being worked on under its lock. */
export class ScheduleFiring {
  spec: CompiledSpec;
  private specDef: ScheduleSpec;
  readonly action: ScheduleActionDef;
  readonly state: ScheduleState;
  private lastRunOpen: boolean | undefined;
  /** Runs this transaction started: invisible to any other transaction until the commit. */
  private readonly startedHere = new Set<string>();

  constructor(
    private readonly engine: Engine,
    private readonly tx: TransactionSql,
    private readonly effects: Effects,
    readonly row: ScheduleRecord,
    readonly nowMs: number,
  ) {
    this.specDef = row.spec as ScheduleSpec;
    this.spec = new CompiledSpec(this.specDef);
    this.action = row.action as ScheduleActionDef;
    this.state = {
      paused: row.paused,
      note: row.note,
      pausedAt: row.pausedAt,
      remainingActions: row.remainingActions,
      nextNominalAt: row.nextNominalAt,
      dueAt: row.dueAt,
      buffered: [...row.buffered],
      lastRunId: row.lastRunId,
      cancelRequestedRunId: row.cancelRequestedRunId,
      recentActions: [...row.recentActions],
      recentSkips: [...row.recentSkips],
      actionCount: row.actionCount,
      overlapSkipped: row.overlapSkipped,
      pausedSkipped: row.pausedSkipped,
      catchupWindowMissed: row.catchupWindowMissed,
    };
  }

  /** UpdateSchedule: the new spec decides the next times from now on. */
  useSpec(spec: ScheduleSpec): void {
    this.specDef = spec;
    this.spec = new CompiledSpec(spec);
  }

  /** The scheduled nominal times that are due: fired, or skipped when older than the catch-up window. */
  async fireDueTimes(): Promise<void> {
    const s = this.state;
    let handled = 0;
    while (s.nextNominalAt !== null && handled < MAX_TIMES_PER_PASS) {
      const nominal = s.nextNominalAt.getTime();
      if (nominal + jitterOf(this.row.id, nominal, this.specDef.jitterMs) > this.nowMs) break;
      // Buffered scheduled firings are older and spend the remaining actions first.
      await this.startBuffered();
      if (s.remainingActions === 0) {
        s.nextNominalAt = null;
        break;
      }
      handled++;
      if (this.nowMs - nominal > this.row.catchupWindowMs) {
        s.catchupWindowMissed++;
        this.skip(nominal, "catchup_window");
      } else {
        await this.fire(nominal, "scheduled", this.row.overlapPolicy as OverlapPolicy);
      }
      const next = this.spec.nextAfter(nominal);
      s.nextNominalAt = next === null ? null : new Date(next);
    }
  }

  /**
   * Fires one nominal time under `policy`. Buffered firings go first (they are
   * older); a firing that finds the previous run open is decided by the policy.
   */
  async fire(nominal: number, kind: FiringKind, policy: OverlapPolicy): Promise<FireOutcome> {
    await this.startBuffered();
    const s = this.state;
    if (policy !== OverlapPolicy.ALLOW_ALL && (await this.previousRunOpen())) {
      switch (policy) {
        case OverlapPolicy.SKIP:
          return this.overlapSkipped(nominal);
        case OverlapPolicy.BUFFER_ONE:
          if (s.buffered.length > 0) return this.overlapSkipped(nominal);
          s.buffered.push({ at: nominal, kind });
          return { started: false, buffered: true };
        case OverlapPolicy.BUFFER_ALL:
          // A scheduled firing waits only while an action is left for it: the ones already waiting come first.
          if (s.buffered.length >= MAX_BUFFERED || (kind === "scheduled" && this.actionsLeft() <= 0)) return this.overlapSkipped(nominal);
          s.buffered.push({ at: nominal, kind });
          return { started: false, buffered: true };
        case OverlapPolicy.CANCEL_OTHER:
          await this.cancelPrevious();
          // Only the newest waits: the ones it replaces are skipped as overlapping.
          for (const replaced of s.buffered.splice(0)) this.overlapSkipped(replaced.at);
          s.buffered.push({ at: nominal, kind });
          return { started: false, buffered: true };
        case OverlapPolicy.TERMINATE_OTHER:
          await this.terminatePrevious();
          break;
      }
    }
    return this.start(nominal, kind);
  }

  /**
   * Starts buffered firings while the previous run has ended (one at a time: each start opens a run).
   * A scheduled one spends one of the remaining actions; with none left it is dropped (the limit was
   * lowered by UpdateSchedule while it waited).
   */
  async startBuffered(): Promise<void> {
    const s = this.state;
    while (s.buffered.length > 0 && !(await this.previousRunOpen())) {
      const next = s.buffered.shift()!;
      if (next.kind === "scheduled" && s.remainingActions === 0) continue;
      await this.start(next.at, next.kind);
    }
  }

  /** Remaining actions not yet promised to a waiting scheduled firing (Infinity: no limit). */
  private actionsLeft(): number {
    const s = this.state;
    if (s.remainingActions === null) return Number.POSITIVE_INFINITY;
    return s.remainingActions - s.buffered.filter((b) => b.kind === "scheduled").length;
  }

  /** When a server must look at the row next (null: nothing to do until a call changes it). */
  nextDueAt(): Date | null {
    const s = this.state;
    if (s.paused) return null;
    let due = Number.POSITIVE_INFINITY;
    if (s.nextNominalAt !== null && s.remainingActions !== 0) {
      const nominal = s.nextNominalAt.getTime();
      due = nominal + jitterOf(this.row.id, nominal, this.specDef.jitterMs);
    }
    if (s.buffered.length > 0) due = Math.min(due, this.nowMs + BUFFER_RECHECK_MS);
    return Number.isFinite(due) ? new Date(due) : null;
  }

  skip(nominal: number, reason: SkipReason, count = 1): void {
    const s = this.state;
    const last = s.recentSkips[0];
    // Consecutive skips of one reason (an outage, a pause) are one entry with a count.
    if (last && last.reason === reason && reason !== "overlap" && last.nominal < nominal) {
      s.recentSkips[0] = { nominal, reason, at: this.nowMs, count: last.count + count };
      return;
    }
    s.recentSkips.unshift({ nominal, reason, at: this.nowMs, count });
    s.recentSkips.length = Math.min(s.recentSkips.length, RECENT_LIMIT);
  }

  private overlapSkipped(nominal: number): FireOutcome {
    this.state.overlapSkipped++;
    this.skip(nominal, "overlap");
    return { started: false, buffered: false, skipped: "overlap" };
  }

  private async previousRunOpen(): Promise<boolean> {
    if (this.lastRunOpen === undefined) {
      const last = this.state.lastRunId;
      this.lastRunOpen = last === null ? false : await runIsOpen(this.tx, last);
    }
    return this.lastRunOpen;
  }

  /**
   * CancelRun of the previous run, once per run (the firing waits for it to end). A run this
   * transaction started (catch-up of several times, backfill, a trigger after a buffered start) is
   * asked in this transaction: CancelRun's own could not see it.
   */
  private async cancelPrevious(): Promise<void> {
    const runId = this.state.lastRunId!;
    if (this.state.cancelRequestedRunId === runId) return;
    const reason = `schedule ${this.row.id}: overlap policy CANCEL_OTHER`;
    if (this.startedHere.has(runId)) await cancelRuns(this.tx, this.effects, { runIds: [runId] }, reason);
    else await ignoreEnded(cancelRun(this.engine, { selector: { runId }, reason }));
    this.state.cancelRequestedRunId = runId;
  }

  /**
   * TerminateRun of the previous run, in its own transaction (the one that
   * ends runs): if this firing's transaction then fails, the retry finds the
   * run ended and starts. A run this transaction started is invisible there,
   * so it is terminated here (it has no parent and no concurrency key, and
   * nobody else can hold its lock or its task's).
   */
  private async terminatePrevious(): Promise<void> {
    const runId = this.state.lastRunId!;
    const reason = `schedule ${this.row.id}: overlap policy TERMINATE_OTHER`;
    if (this.startedHere.has(runId)) {
      const run = await lockRun(this.tx, runId);
      if (!run) throw new Error(`run ${runId}, started by this transaction, is not found`);
      await terminateLocked(this.engine, this.tx, this.effects, run, undefined, terminationRecords(reason, ""));
      this.effects.wakeRun(runId);
    } else {
      await ignoreEnded(terminateRun(this.engine, { selector: { runId }, reason }));
    }
    this.lastRunOpen = false;
  }

  /**
   * The start: instance id and request id derived from the schedule and the
   * nominal time, so the same nominal time can never start two runs (a second
   * attempt is answered with the first run, or finds it open).
   */
  private async start(nominal: number, kind: FiringKind): Promise<FireOutcome> {
    const s = this.state;
    const instanceId = scheduledInstanceId(this.row.id, nominal);
    const run = newRun({
      workflowName: this.action.workflowName,
      instanceId,
      taskQueue: this.action.taskQueue,
      input: decodePayload(this.row.input),
      labels: this.action.labels,
      priority: this.action.priority,
      requestId: `schedule:${this.row.generation}:${nominal}`,
      reusePolicy: ReusePolicy.ALLOW,
      concurrencyKey: null,
      concurrencyLimit: null,
    });
    const outcome = await insertRun(this.tx, run);
    switch (outcome.outcome) {
      case "queue_missing":
        this.skip(nominal, "task_queue_missing");
        return { started: false, buffered: false, skipped: "task_queue_missing" };
      case "open_run_exists":
      case "reuse_rejected":
        return this.overlapSkipped(nominal);
      case "same_request":
        return { runId: outcome.runId, started: false, buffered: false };
      case "started": {
        const queue = this.action.taskQueue;
        this.effects.wakeQueue(QueueType.WORKFLOW, queue);
        this.effects.observe((observer) => observer.runStarted(queue));
        s.lastRunId = outcome.runId;
        this.lastRunOpen = true;
        this.startedHere.add(outcome.runId);
        s.actionCount++;
        // Every scheduled start spends an action, the time's own and a buffered one alike; triggers and backfills do not.
        if (kind === "scheduled" && s.remainingActions !== null) s.remainingActions--;
        const entry: ActionEntry = { nominal, actual: this.nowMs, runId: outcome.runId, instanceId, kind };
        s.recentActions.unshift(entry);
        s.recentActions.length = Math.min(s.recentActions.length, RECENT_LIMIT);
        this.engine.logger.debug("schedule started a run", { scheduleId: this.row.id, runId: outcome.runId, instanceId, workflow: this.action.workflowName });
        return { runId: outcome.runId, started: true, buffered: false };
      }
    }
  }
}

/** Cancel and terminate of a run that ended meanwhile: nothing to do. */
async function ignoreEnded(call: Promise<unknown>): Promise<void> {
  try {
    await call;
  } catch (err) {
    if (err instanceof DexError && (err.code === "FAILED_PRECONDITION" || err.code === "NOT_FOUND")) return;
    throw err;
  }
}

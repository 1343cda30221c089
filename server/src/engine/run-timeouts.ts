/**
 * Run timeouts (docs/decisions/0027-run-timeouts.md): a run started with a
 * run timeout ends TIMED_OUT when it passes, whatever it is doing (no worker
 * knows its workflow, its workflow task fails on every attempt, it sleeps).
 *
 * The limit is a timer (kind 'run_timeout', seq 0) that the start statement
 * writes with the run (store/runs.ts insertRuns), so every way a run starts
 * (client start, SendEventWithStart, child, continue-as-new, schedule) gets it
 * in the same commit, and ending the run any other way deletes it with the
 * run's other timers. The timer loop's pass reports the due ones
 * (store/timers.ts fireDueTimers: no extra statement, no polling of its own)
 * and hands them to a RunTimeoutQueue, off the pass (decision 0032):
 * ordinary timers never wait for a burst of run timeouts.
 *
 * Once across servers: each run is ended in one transaction that takes the
 * lifecycle's locks (parent, then run, both SKIP LOCKED, then its workflow
 * task NOWAIT; a run waiting for its concurrency key: the key's lock first)
 * and then deletes the timer row. A run (or parent) whose row someone else
 * holds is not waited for: it is left due ("busy") and the loop tries it
 * again shortly, so a long completion or a stuck transaction holds neither a
 * slot nor a pooled connection. Two servers handed the same run: the one
 * that gets the lock deletes the timer; the other skips the run, and its
 * retry finds the timer gone and does nothing. The end itself is
 * TerminateRun's (store terminateRunRows, engine afterRunEnded): tasks, inbox
 * and timers dropped, the parent hears child_run_ended TIMED_OUT, CANCEL
 * children are asked to cancel, the concurrency key's slots are handed out.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { FailureKind, FailureSchema, TimeoutType } from "@dex/proto";
import type { Logger } from "../logger.js";
import { lockRun, type LockedRun } from "../store/completion-locks.js";
import type { Queryable } from "../store/db.js";
import { lockWorkflowTaskNoWait, parentOf, terminateRunRows } from "../store/lifecycle.js";
import { runExists, takeRunTimeout } from "../store/timers.js";
import { handOverSlots } from "./concurrency-keys.js";
import type { Engine } from "./context.js";
import { encodeEvent, encodeFailure } from "./events.js";
import { keyLockFirst, requireKeyLock, withRetries } from "./lifecycle.js";
import { isTerminal, RunStatus } from "./model.js";
import { afterRunEnded } from "./relatives.js";

/**
 * Run timeouts ended at once by one server. Each is a short transaction (it waits for no run
 * row: see timeOutRun), so a few at a time overlap their round trips; four leave most of the
 * main pool (10 connections by default) to the calls. Measured (decision 0032, 2 loaded cores):
 * a burst of 500 ended 3.2 s after it came due, against 5.7 s one at a time inside the pass,
 * which it held all that while.
 */
export const RUN_TIMEOUT_CONCURRENCY = 4;

/** What became of one run handed to timeOutRun. */
export type RunTimeoutOutcome =
  /** This call ended the run TIMED_OUT. */
  | "ended"
  /** Nothing to do: the run had ended, or another server fired its run timeout. */
  | "gone"
  /** The run's (or its parent's) row was locked by someone else: the run timeout stays due. */
  | "busy";

/** What became of the runs one RunTimeoutQueue.end() call took. */
export interface RunTimeoutRound {
  /** Runs ended TIMED_OUT. */
  ended: number;
  /** Runs whose run timeout is still due (busy, failed, or dropped by stop()): worth another try. */
  leftDue: number;
}

interface Queued {
  runId: string;
  round: { pending: number; ended: number; leftDue: number; done: (round: RunTimeoutRound) => void };
}

/**
 * The run timeouts this server is ending: at most `concurrency` at a time, fed by every timer
 * pass that reports due ones (engine/timer-loop.ts), never awaited by a pass.
 *
 * Why a queue with a set of held runs, not one batch at a time: a batch that waited for one
 * slow run made every run timeout that came due meanwhile wait for it (the passes reported
 * them, and dropped them while the batch was in flight). Here each pass's runs join at once,
 * except those already queued or being ended (`held`), which no pass hands over twice; a slow
 * run holds one slot, the others keep going.
 *
 * Order: each call's runs are shuffled. Every server's pass reports the same head of the due
 * timers; two servers that walked it in the same order would contend for the same runs, so
 * each walks it in its own order and mostly ends different runs.
 */
export class RunTimeoutQueue {
  private readonly queued: Queued[] = [];
  private readonly held = new Set<string>();
  private active = 0;
  private stopped = false;
  private whenIdle: Array<() => void> = [];

  constructor(
    private readonly timeOut: (runId: string) => Promise<RunTimeoutOutcome>,
    private readonly logger: Logger,
    private readonly concurrency = RUN_TIMEOUT_CONCURRENCY,
  ) {}

  /**
   * Queues the runs not already held; resolves once those have been tried, with what became
   * of them (the loop's cue to look again at once, or after a back-off).
   */
  end(runIds: readonly string[]): Promise<RunTimeoutRound> {
    const fresh = shuffled([...new Set(runIds)].filter((id) => !this.held.has(id)));
    if (this.stopped || fresh.length === 0) return Promise.resolve({ ended: 0, leftDue: 0 });
    return new Promise((done) => {
      const round = { pending: fresh.length, ended: 0, leftDue: 0, done };
      for (const runId of fresh) {
        this.held.add(runId);
        this.queued.push({ runId, round });
      }
      this.fill();
    });
  }

  /** Drops the runs not started (they stay due) and resolves once the ones being ended are done. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const item of this.queued.splice(0)) this.settle(item, "failed");
    if (this.active > 0) await new Promise<void>((resolve) => this.whenIdle.push(resolve));
  }

  private fill(): void {
    while (!this.stopped && this.active < this.concurrency && this.queued.length > 0) {
      this.active++;
      void this.attempt(this.queued.shift()!);
    }
  }

  private async attempt(item: Queued): Promise<void> {
    let outcome: RunTimeoutOutcome | "failed";
    try {
      outcome = await this.timeOut(item.runId);
      if (outcome === "busy") this.logger.debug("run timeout left due: its run is locked; retrying shortly", { runId: item.runId });
    } catch (err) {
      outcome = "failed";
      this.logger.warn("run timeout could not end the run; retrying on a later timer pass", { runId: item.runId, err });
    }
    this.active--;
    this.settle(item, outcome);
    this.fill();
    if (this.active === 0) for (const resolve of this.whenIdle.splice(0)) resolve();
  }

  private settle({ runId, round }: Queued, outcome: RunTimeoutOutcome | "failed"): void {
    this.held.delete(runId);
    if (outcome === "ended") round.ended++;
    else if (outcome !== "gone") round.leftDue++;
    if (--round.pending === 0) round.done({ ended: round.ended, leftDue: round.leftDue });
  }
}

function shuffled<T>(list: readonly T[]): T[] {
  const copy = [...list];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/** The failure a timed-out run carries: what result() and the parent's child_run_ended show. */
export function runTimeoutFailure(runTimeoutMs: number): Uint8Array {
  return encodeFailure(
    create(FailureSchema, {
      message: `run timed out: its run timeout of ${formatMs(runTimeoutMs)} passed before it ended`,
      type: "RunTimedOut",
      nonRetryable: true,
      kind: FailureKind.TIMEOUT,
      timeoutType: TimeoutType.RUN,
    }),
  )!;
}

/**
 * Ends one run whose run timeout is due, in one transaction; see the header for the locks.
 * The parent's and the run's rows are taken SKIP LOCKED: a holder may be a long completion or
 * a stuck transaction, and waiting for it would hold a slot and a pooled connection up to the
 * statement timeout (30 s) while other run timeouts came due.
 */
export async function timeOutRun(engine: Engine, runId: string): Promise<RunTimeoutOutcome> {
  return withRetries(engine, "run timeout", async (tx, effects, state) => {
    // Lock order as TerminateRun's: a waiting run's key, the parent, the run, its task.
    await keyLockFirst(tx, runId, state);
    const parentId = await parentOf(tx, runId);
    const parent = parentId ? await lockRunUnlessBusy(tx, parentId) : undefined;
    if (parent === "busy") return "busy";
    const run = await lockRunUnlessBusy(tx, runId);
    if (run === "busy") return "busy";
    if (run) requireKeyLock(run, state);
    // Under the run's lock: the timer is there only if nobody fired it and the run did not end.
    const taken = await takeRunTimeout(tx, runId);
    if (!taken) return "gone";
    if (!run || isTerminal(run.status as RunStatus)) return "gone"; // an orphaned timer, now deleted
    await lockWorkflowTaskNoWait(tx, run);
    const { runTimeoutMs } = taken;
    const failure = runTimeoutFailure(runTimeoutMs);
    const event = encodeEvent({ case: "runTimedOut", value: { runTimeout: durationFromMs(runTimeoutMs) } }).event;
    await terminateRunRows(tx, run, { event, failure, ending: { status: "TIMED_OUT", eventKind: "run_timed_out" } });
    await afterRunEnded(engine, tx, effects, run, parent, { status: RunStatus.TIMED_OUT, result: null, failure });
    if (run.concurrencyKey !== null) await handOverSlots(tx, effects, run.concurrencyKey);
    effects.wakeRun(run.id);
    engine.logger.info("run timed out", { runId: run.id, workflow: run.workflowName, runTimeoutMs });
    return "ended";
  });
}

/**
 * The run's row lock without waiting: "busy" when another transaction holds it, undefined when
 * the run does not exist. SKIP LOCKED rather than NOWAIT: a busy run is the expected case under
 * load, and NOWAIT's error would abort the transaction and log an ERROR in Postgres each time.
 * The existence check costs a second statement only when the row was not locked.
 */
async function lockRunUnlessBusy(tx: Queryable, runId: string): Promise<LockedRun | undefined | "busy"> {
  const run = await lockRun(tx, runId, true);
  if (run) return run;
  return (await runExists(tx, runId)) ? "busy" : undefined;
}

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

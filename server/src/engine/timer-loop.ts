/**
 * The per-server timer loop: moves due timers into their runs' inboxes (one
 * statement per pass, store/timers.ts fireDueTimers), then wakes this server's
 * parked polls of the queues that got workflow tasks and announces those
 * queues to the other servers (after the statement, through
 * engine/notifier.ts: the one wake-up mechanism, store/notify.ts).
 *
 * When it runs:
 * - at once on start, so timers that came due while no server ran fire right
 *   away;
 * - at the next known fire time the pass reported (the database's own clock,
 *   as a relative delay, so clock skew between this host and Postgres does
 *   not matter), but at most `maxSleepMs` later: timers created on other
 *   servers are found within that, without any cross-server signal;
 * - earlier when a commit on this server created a timer (`hint`);
 * - at once again while a pass hit its batch limit (a backlog), and shortly
 *   when it skipped runs locked by a completion (they are released within
 *   milliseconds).
 * So an idle server costs one indexed query per `maxSleepMs`, however many
 * runs sleep: the pass reads only the head of the timers_due index.
 *
 * A database error never ends the loop: it logs the first error of a streak,
 * backs off (doubling up to a cap) and keeps going.
 *
 * RUN TIMEOUTS OFF THE PASS (docs/decisions/0032-loops-that-do-not-stall.md):
 * the pass only reports the due run timeouts; ending them (a transaction per
 * run) runs beside the loop, in engine/run-timeouts.ts's RunTimeoutQueue, so a
 * burst of them never delays the ordinary timers of the next passes. Every
 * pass hands its report over (the queue skips the runs it already holds), so
 * a run timeout due while others are being ended joins at once. What the
 * loop does once a pass's runs were tried:
 * - some ended and the report was full: a pass at once, as for a backlog of
 *   timers (more may be due behind this head);
 * - some were left due (their run locked by someone else, or the attempt
 *   failed): a pass after `lockedRetryMs`, doubling while tries end nothing,
 *   up to `maxSleepMs`. Never at once: a report of runs that all stay locked
 *   (a stuck transaction) or all fail (the database refuses) would otherwise
 *   make the loop spin, one pass and one attempt per run after another.
 */
import type { Logger } from "../logger.js";
import type { Queryable } from "../store/db.js";
import { fireDueTimers, type FirePass } from "../store/timers.js";
import { QueueType } from "./model.js";
import type { RunTimeoutRound } from "./run-timeouts.js";
import type { Wakeups } from "./wakeups.js";

export interface TimerLoopOptions {
  /** Longest sleep between passes (how soon a timer created on another server is seen). Default 1 000 ms. */
  maxSleepMs?: number;
  /** Timers fired per pass, i.e. per statement. Default 500. */
  batchSize?: number;
  /**
   * Delay before the next pass when one skipped runs that were locked, or left run timeouts due;
   * for run timeouts it doubles while tries end nothing, up to maxSleepMs. Default 20 ms.
   */
  lockedRetryMs?: number;
  /** Back-off after a failed pass: initialMs doubling up to maxMs. Default 100 / 5 000 ms. */
  errorBackoff?: { initialMs: number; maxMs: number };
}

export interface TimerLoopDeps {
  sql: Queryable;
  wakeups: Wakeups;
  logger: Logger;
  /**
   * Tells the other servers' parked polls that these workflow queues got tasks (called after the
   * pass's statement returned; server.ts hands them to engine/notifier.ts).
   */
  announce: (queues: string[]) => void;
  /**
   * Ends the runs whose run timeout is due (engine/run-timeouts.ts RunTimeoutQueue): each pass
   * hands over what it reports, never awaiting it; the loop stops it in stop().
   */
  runTimeouts?: {
    /** Resolves once the runs it took (those not already in hand) were tried. */
    end(runIds: readonly string[]): Promise<RunTimeoutRound>;
    /** Drops what has not started; resolves once nothing is running. */
    stop(): Promise<void>;
  };
}

export interface TimerLoopStats {
  /** Passes run (statements sent), failed ones included. */
  passes: number;
  /** Timers moved into inboxes. */
  fired: number;
  /** Passes that failed. */
  errors: number;
  /** Passes whose due run timeouts were handed to `runTimeouts` (off the pass). */
  runTimeoutBatches: number;
  /** Runs ended TIMED_OUT by this loop's hand-overs. */
  runTimeoutsEnded: number;
  /** Tries that left a run timeout due (run locked, or failed); each is retried later. */
  runTimeoutsLeftDue: number;
}

export class TimerLoop {
  private readonly maxSleepMs: number;
  private readonly batchSize: number;
  private readonly lockedRetryMs: number;
  private readonly errorBackoff: { initialMs: number; maxMs: number };

  private stopped = false;
  private running: Promise<void> | undefined;
  /** The pending sleep: its local deadline, timer and resolver. */
  private sleeping: { until: number; timer: NodeJS.Timeout; resolve: () => void } | undefined;
  /** Earliest hint (local ms) received since the current pass began; it may postdate the pass's snapshot. */
  private hintedAt = Number.POSITIVE_INFINITY;
  /** Database clock minus local clock, estimated at each pass, to turn hints (database times) into local ones. */
  private clockOffsetMs = 0;
  /** Hand-overs of run timeouts not yet tried in full (what stop() waits for). */
  private readonly runTimeoutRounds = new Set<Promise<void>>();
  /** Hand-overs in a row that left run timeouts due and ended none: the retry's back-off exponent. */
  private fruitlessRounds = 0;
  readonly stats: TimerLoopStats = { passes: 0, fired: 0, errors: 0, runTimeoutBatches: 0, runTimeoutsEnded: 0, runTimeoutsLeftDue: 0 };

  constructor(
    private readonly deps: TimerLoopDeps,
    options: TimerLoopOptions = {},
  ) {
    this.maxSleepMs = options.maxSleepMs ?? 1_000;
    this.batchSize = options.batchSize ?? 500;
    this.lockedRetryMs = options.lockedRetryMs ?? 20;
    this.errorBackoff = options.errorBackoff ?? { initialMs: 100, maxMs: 5_000 };
  }

  start(): void {
    if (this.running || this.stopped) return;
    this.running = this.run();
  }

  /**
   * A commit on this server created a timer firing at `at` (a database-clock
   * time: task time + duration): wake by then. Cheap enough to call per
   * commit: it only moves the pending sleep earlier.
   */
  hint(at: Date): void {
    if (this.stopped) return;
    // +1 ms: timestamps carry microseconds that a Date drops; waking a hair
    // late costs nothing, waking early costs an empty pass.
    this.wakeBy(at.getTime() - this.clockOffsetMs + 1);
  }

  /** Moves the next pass to `local` (this host's clock) at the latest. */
  private wakeBy(local: number): void {
    if (local < this.hintedAt) this.hintedAt = local;
    const sleeping = this.sleeping;
    if (sleeping && local < sleeping.until) this.sleepUntil(sleeping, local);
  }

  /**
   * Runs a pass now, or right after the pass in flight: the test clock moved (engine/test-clock.ts),
   * so timers may be due that no hint announced, and the sleep was measured on the old clock.
   */
  nudge(): void {
    if (this.stopped) return;
    this.hintedAt = Number.NEGATIVE_INFINITY;
    this.wake();
  }

  /**
   * Stops after the pass in flight and the run timeouts being ended (those not started stay due);
   * resolves once no statement of the loop is running.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.running;
    await this.deps.runTimeouts?.stop();
    await Promise.all(this.runTimeoutRounds);
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      let delayMs: number;
      try {
        const pass = await this.pass();
        if (failures > 0) this.deps.logger.info("timer loop recovered", { failedPasses: failures });
        failures = 0;
        delayMs = this.nextDelay(pass);
      } catch (err) {
        failures++;
        this.stats.errors++;
        // The first failure of a streak is logged; an outage must not flood the log.
        if (failures === 1) this.deps.logger.warn("timer loop pass failed; backing off", { err });
        delayMs = Math.min(this.errorBackoff.initialMs * 2 ** (failures - 1), this.errorBackoff.maxMs);
      }
      if (delayMs > 0 && !this.stopped) await this.sleep(delayMs);
    }
  }

  private async pass(): Promise<FirePass> {
    // Hints that arrived before this point are covered by the pass: their
    // commits precede the statement, so its snapshot sees their timers.
    this.hintedAt = Number.POSITIVE_INFINITY;
    this.stats.passes++;
    const sentAt = Date.now();
    const pass = await fireDueTimers(this.deps.sql, { limit: this.batchSize });
    const receivedAt = Date.now();
    this.clockOffsetMs = pass.dbNow.getTime() - (sentAt + receivedAt) / 2;
    this.stats.fired += pass.fired;
    for (const { queue, tasks } of pass.queues) this.deps.wakeups.wakeQueue(QueueType.WORKFLOW, queue, tasks);
    if (pass.queues.length > 0) this.deps.announce(pass.queues.map((q) => q.queue));
    if (pass.fired > 0) this.deps.logger.debug("timers fired", { fired: pass.fired, skippedRuns: pass.skippedRuns });
    if (pass.runTimeouts.length > 0) {
      this.endRunTimeouts(pass.runTimeouts);
      // How long a pass that saw run timeouts held the loop (decision 0032's measurement).
      this.deps.logger.debug("timer pass", { ms: Date.now() - sentAt, runTimeouts: pass.runTimeouts.length });
    }
    return pass;
  }

  /** Hands due run timeouts over without waiting for them (see RUN TIMEOUTS OFF THE PASS). */
  private endRunTimeouts(runIds: string[]): void {
    const runTimeouts = this.deps.runTimeouts;
    if (!runTimeouts || this.stopped) return;
    this.stats.runTimeoutBatches++;
    const full = runIds.length >= this.batchSize;
    const round: Promise<void> = runTimeouts
      .end(runIds)
      .then((result) => this.afterRunTimeouts(result, full))
      .catch((err: unknown) => this.deps.logger.warn("run timeouts could not be ended; retrying on a later timer pass", { err }))
      .finally(() => this.runTimeoutRounds.delete(round));
    this.runTimeoutRounds.add(round);
  }

  /** When to look again after a hand-over was tried (see RUN TIMEOUTS OFF THE PASS). */
  private afterRunTimeouts({ ended, leftDue }: RunTimeoutRound, full: boolean): void {
    this.stats.runTimeoutsEnded += ended;
    this.stats.runTimeoutsLeftDue += leftDue;
    if (this.stopped) return;
    if (ended > 0) this.fruitlessRounds = 0;
    else if (leftDue > 0) this.fruitlessRounds = Math.min(this.fruitlessRounds + 1, 30);
    if (full && ended > 0) return this.nudge();
    if (leftDue === 0) return;
    const retryMs = Math.min(this.lockedRetryMs * 2 ** Math.max(0, this.fruitlessRounds - 1), this.maxSleepMs);
    this.wakeBy(Date.now() + retryMs);
  }

  private nextDelay(pass: FirePass): number {
    if (pass.due >= this.batchSize) return 0; // a backlog: keep going
    if (pass.skippedRuns > 0) return this.lockedRetryMs;
    // ceil + 1: the fire time has microseconds; never wake just before it.
    const next = pass.nextInMs === null ? Number.POSITIVE_INFINITY : Math.ceil(pass.nextInMs) + 1;
    return Math.max(0, Math.min(next, this.maxSleepMs));
  }

  /** Sleeps `delayMs`, or until an earlier hint, or until stop(). */
  private sleep(delayMs: number): Promise<void> {
    const until = Math.min(Date.now() + delayMs, this.hintedAt);
    if (until <= Date.now()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const entry = { until, timer: undefined as unknown as NodeJS.Timeout, resolve };
      this.sleeping = entry;
      this.sleepUntil(entry, until);
    });
  }

  private sleepUntil(entry: { until: number; timer: NodeJS.Timeout; resolve: () => void }, until: number): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.until = until;
    entry.timer = setTimeout(() => this.wake(), Math.max(0, until - Date.now()));
    // The loop must not keep a process alive on its own: close() stops it.
    entry.timer.unref();
  }

  private wake(): void {
    const sleeping = this.sleeping;
    if (!sleeping) return;
    this.sleeping = undefined;
    clearTimeout(sleeping.timer);
    sleeping.resolve();
  }
}

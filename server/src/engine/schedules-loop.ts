/**
 * The per-server schedule loop: fires due schedules, each in a transaction of
 * its own that claims the row FOR UPDATE SKIP LOCKED, starts the run and
 * advances the row's due time (store/schedules.ts explains why that fires
 * each nominal time once across any number of servers).
 *
 * When it runs (no busy polling):
 * - at once on start, so firings missed while no server ran are caught up (or
 *   skipped, past the catch-up window);
 * - at the earliest due_at (probeNextDue: one index probe, the database's
 *   clock as a relative delay, so clock skew does not matter), but at most
 *   `maxSleepMs` later, the backstop for a wake-up lost with a server that
 *   died between its commit and its NOTIFY;
 * - at once when a schedule is created or changed on this server
 *   (engine/schedules.ts) or on another (the `schedules` wake-up through
 *   engine/notifier.ts, store/notify.ts), or when the LISTEN connection came
 *   back (wake-ups may have been lost);
 * - shortly again when the due row was locked by another server's firing
 *   (it commits within milliseconds and moves the row's due time on).
 * An idle server costs one index probe per `maxSleepMs` (60 s), however many
 * schedules wait: decision 0020 has the measurement.
 *
 * A database error never ends the loop: it logs the first of a streak and
 * backs off (doubling up to a cap).
 */
import type { Logger } from "../logger.js";
import { claimDueSchedule, databaseNow, probeNextDue, saveScheduleState } from "../store/schedules.js";
import type { Engine } from "./context.js";
import { inTransaction } from "./effects.js";
import { ScheduleFiring } from "./schedules-firing.js";

export interface ScheduleLoopOptions {
  /** Longest sleep between probes. Default 60 000 ms. */
  maxSleepMs?: number;
  /** Delay before looking again when the due row was locked by another server. Default 25 ms. */
  lockedRetryMs?: number;
  /** Back-off after a failed pass: initialMs doubling up to maxMs. Default 100 / 5 000 ms. */
  errorBackoff?: { initialMs: number; maxMs: number };
}

export interface ScheduleLoopStats {
  /** Probes sent (statements when idle). */
  probes: number;
  /** Schedule rows claimed and worked on. */
  claims: number;
  errors: number;
}

export class ScheduleLoop {
  private readonly maxSleepMs: number;
  private readonly lockedRetryMs: number;
  private readonly errorBackoff: { initialMs: number; maxMs: number };
  private stopped = false;
  private running: Promise<void> | undefined;
  private sleeping: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  /** A wake arrived while a pass ran: the pass's snapshot may predate the change, so go again. */
  private woken = false;
  readonly stats: ScheduleLoopStats = { probes: 0, claims: 0, errors: 0 };

  constructor(
    private readonly engine: Engine,
    private readonly logger: Logger,
    options: ScheduleLoopOptions = {},
  ) {
    this.maxSleepMs = options.maxSleepMs ?? 60_000;
    this.lockedRetryMs = options.lockedRetryMs ?? 25;
    this.errorBackoff = options.errorBackoff ?? { initialMs: 100, maxMs: 5_000 };
  }

  start(): void {
    if (this.running || this.stopped) return;
    this.running = this.run();
  }

  /** A schedule changed (here or on another server): look again now. */
  wake(): void {
    if (this.stopped) return;
    this.woken = true;
    const sleeping = this.sleeping;
    if (!sleeping) return;
    this.sleeping = undefined;
    clearTimeout(sleeping.timer);
    sleeping.resolve();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const sleeping = this.sleeping;
    this.sleeping = undefined;
    if (sleeping) {
      clearTimeout(sleeping.timer);
      sleeping.resolve();
    }
    await this.running;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      let delayMs: number;
      try {
        this.woken = false;
        delayMs = await this.pass();
        if (failures > 0) this.logger.info("schedule loop recovered", { failedPasses: failures });
        failures = 0;
      } catch (err) {
        failures++;
        this.stats.errors++;
        if (failures === 1) this.logger.warn("schedule loop pass failed; backing off", { err });
        delayMs = Math.min(this.errorBackoff.initialMs * 2 ** (failures - 1), this.errorBackoff.maxMs);
      }
      if (this.woken && failures === 0) continue;
      if (delayMs > 0 && !this.stopped) await this.sleep(delayMs);
    }
  }

  /** Fires what is due; returns how long to sleep. */
  private async pass(): Promise<number> {
    for (;;) {
      if (this.stopped) return 0;
      this.stats.probes++;
      const { nextInMs } = await probeNextDue(this.engine.sql);
      // ceil + 1: due times carry microseconds; never wake just before one.
      if (nextInMs === null) return this.maxSleepMs;
      if (nextInMs > 0) return Math.min(Math.ceil(nextInMs) + 1, this.maxSleepMs);
      const claimed = await this.fireOne();
      if (!claimed) return this.lockedRetryMs;
    }
  }

  /** Claims one due row and fires it, in one transaction; false when every due row was locked. */
  private async fireOne(): Promise<boolean> {
    const engine = this.engine;
    return inTransaction(engine, async (tx, effects) => {
      const row = await claimDueSchedule(tx);
      if (!row) return false;
      this.stats.claims++;
      const firing = new ScheduleFiring(engine, tx, effects, row, await databaseNow(tx));
      if (!row.paused) {
        await firing.startBuffered();
        await firing.fireDueTimes();
      }
      firing.state.dueAt = firing.nextDueAt();
      await saveScheduleState(tx, row.id, firing.state, false);
      return true;
    });
  }

  private sleep(delayMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.sleeping = undefined;
        resolve();
      }, delayMs);
      // The loop must not keep a process alive on its own: close() stops it.
      timer.unref();
      this.sleeping = { timer, resolve };
    });
  }
}

/**
 * Time skipping: while something awaits a run's result through the environment's client (or
 * `env.sleep`), the skipper asks the server, over and over, to move its clock to the next thing
 * the runs wait for whenever nothing can run now (TestClock.skipIfIdle, one statement that judges
 * "idle" and moves in the same snapshot). So a run asleep for 30 days wakes at once, while an
 * activity that runs (or waits in its queue) holds the clock to real time.
 *
 * Only while awaited, as in Temporal's test environment: between a test's steps the clock runs at
 * real speed, so a test can start a run that waits 7 days for an event, send the event, and only
 * then await the result, without the wait timing out in between.
 */
import type { IdleSkip, TestClock } from "@dex/server";

/** What the skipper did, for tests and benchmarks. */
export interface TimeSkipStats {
  /** Idle checks sent to the server (each one statement). */
  checks: number;
  /** Checks that found nothing could run and moved the clock. */
  skips: number;
  /** Total distance moved by skips, in ms. */
  skippedMs: number;
}

/** Pause between two checks that moved nothing: short, since a test waits on it. */
const CHECK_INTERVAL_MS = 10;

export class TimeSkipper {
  readonly stats: TimeSkipStats = { checks: 0, skips: 0, skippedMs: 0 };
  private awaiting = 0;
  private loop: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly clock: TestClock,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Skips time automatically while `fn` runs (several may overlap). */
  async during<T>(fn: () => Promise<T>): Promise<T> {
    this.awaiting++;
    this.loop ??= this.run();
    try {
      return await fn();
    } finally {
      this.awaiting--;
    }
  }

  /**
   * Moves the clock `ms` forward, firing what comes due on the way in order: it skips to each
   * waiting time up to the target, lets what that woke run (real time passes meanwhile, as
   * always while something runs), and ends by moving to the target.
   */
  async sleep(ms: number): Promise<void> {
    const target = new Date((await this.clock.now()).getTime() + ms);
    for (;;) {
      if (this.stopped) throw new Error("the test environment was closed during sleep()");
      const skip = await this.check(target);
      if (skip.now.getTime() >= target.getTime()) return;
      if (skip.skippedMs === 0) await pause(CHECK_INTERVAL_MS);
    }
  }

  /** Ends the automatic loop (close()). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async check(until?: Date): Promise<IdleSkip> {
    this.stats.checks++;
    const skip = await this.clock.skipIfIdle(until);
    if (skip.skippedMs > 0) {
      this.stats.skips++;
      this.stats.skippedMs += skip.skippedMs;
    }
    return skip;
  }

  private async run(): Promise<void> {
    let failing = false;
    while (!this.stopped && this.awaiting > 0) {
      let moved = false;
      try {
        moved = (await this.check()).skippedMs > 0;
        failing = false;
      } catch (err) {
        // Reported once per streak: the loop goes on (a restart of the database, say).
        if (!failing && !this.stopped) this.onError(err);
        failing = true;
      }
      // After a move the woken timers make the system busy; checking again at once finds that.
      if (!moved) await pause(CHECK_INTERVAL_MS);
    }
    this.loop = undefined;
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

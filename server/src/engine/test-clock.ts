/**
 * The test clock of a server started with `testClock: true` (@dex/test-environment): reads and
 * moves the database clock that store/test-clock.ts shadows, and after every move wakes what
 * waited on the old clock. Not reachable over gRPC: only the process that started the server
 * holds it (docs/decisions/0018-test-clock.md says why no test-only service).
 */
import type { Sql } from "../store/db.js";
import { advanceTestClock, readTestClock, skipTestClockIfIdle, type IdleSkip } from "../store/test-clock.js";
import type { ScheduleLoop } from "./schedules-loop.js";
import type { TimerLoop } from "./timer-loop.js";
import type { Wakeups } from "./wakeups.js";

export type { IdleSkip } from "../store/test-clock.js";

export interface TestClock {
  /** The server's clock now: the time workflow tasks, timers and leases are measured on. */
  now(): Promise<Date>;
  /** Moves the clock forward by `ms` (a whole number, 0 or more) whatever is running; resolves with the new time. */
  advance(ms: number): Promise<Date>;
  /**
   * When nothing can run now (no workflow or activity task visible or leased, no due timer or
   * schedule firing left unhandled), moves the clock to the earliest time something waits for (a
   * timer, an event wait's timeout, a retry's back-off, a schedule's next firing), at most to
   * `until`; otherwise changes nothing.
   */
  skipIfIdle(until?: Date): Promise<IdleSkip>;
}

export function createTestClock(deps: { sql: Sql; timerLoop: TimerLoop; scheduleLoop: ScheduleLoop; wakeups: Wakeups }): TestClock {
  // Due times the wake-ups armed on the old clock (retries' back-offs, as local times) are now
  // late, and the timer and schedule loops sleep toward due times measured before the move: wake all.
  const moved = () => {
    deps.timerLoop.nudge();
    deps.scheduleLoop.wake();
    deps.wakeups.wakeEverything();
  };
  // One move at a time: two skips at once would each judge "idle" on a snapshot taken before the
  // other's move (the second waits for the first's row lock, then adds its own stale distance).
  let last: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = last.then(fn, fn);
    last = next.catch(() => {});
    return next;
  };
  return {
    now: async () => (await readTestClock(deps.sql)).now,
    async advance(ms) {
      if (!Number.isInteger(ms) || ms < 0) throw new TypeError(`advance: ms must be a whole number of milliseconds, 0 or more, got ${ms}`);
      return serial(async () => {
        const now = await advanceTestClock(deps.sql, ms);
        moved();
        return now;
      });
    },
    skipIfIdle(until) {
      return serial(async () => {
        const skip = await skipTestClockIfIdle(deps.sql, until ?? null);
        if (skip.skippedMs > 0) moved();
        return skip;
      });
    },
  };
}

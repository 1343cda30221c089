/** What the engine's operations need, built once by the server. */
import type { Logger } from "../logger.js";
import type { EngineObserver } from "../metrics/observer.js";
import type { RecentPolls } from "../metrics/poll-tracker.js";
import type { Sql } from "../store/db.js";
import type { Limits } from "./limits.js";
import type { WorkflowTaskRetry } from "./model.js";
import type { Wakeups } from "./wakeups.js";

export interface Engine {
  readonly sql: Sql;
  /**
   * The poll path's own pool (claims, the history they hand out, releases), so a claim never
   * queues behind the main pool's transactions; undefined: polls use `sql` (tests, embedders).
   */
  readonly dispatchSql?: Sql;
  readonly wakeups: Wakeups;
  readonly logger: Logger;
  /** This server's id: the origin of its NOTIFYs (it skips its own). */
  readonly origin: string;
  readonly maxPollWaitMs: number;
  readonly workflowTaskRetry: WorkflowTaskRetry;
  /** How long a run's next workflow task waits for the worker that holds the run before any worker may take it (0: no sticky routing). */
  readonly stickyFallbackMs: number;
  /** What a request may carry and how long a history may grow (engine/limits.ts). */
  readonly limits: Limits;
  /**
   * Queues seen to exist. Deleting a queue on another server leaves an entry
   * here, so it only saves a lookup: every use of a queue is checked again by
   * the database (see engine/task-queues.ts queueExists).
   */
  readonly knownQueues: Set<string>;
  /** Told what the engine did (polls, dispatches, executions, run starts and ends), in-process, no SQL. */
  readonly observer: EngineObserver;
  /** Polls this server has seen and not yet written to task_queues.last_polled_at (describe's "no worker polled"). */
  readonly recentPolls: RecentPolls;
  /** A commit created a timer firing at `at`: this server's timer loop wakes by then. */
  timerHint(at: Date): void;
  /**
   * The database's now() is a test clock (@dex/test-environment) that may run days ahead of this
   * process's: a run id's time (this process's clock) then says nothing of its created_at, so
   * ListRuns must not bound its scan by it (store/run-id-time.ts).
   */
  readonly testClock?: boolean;
}

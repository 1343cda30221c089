/** What the engine's operations need, built once by the server. */
import type { Logger } from "../logger.js";
import type { Sql } from "../store/db.js";
import type { Drizzle } from "../store/runs.js";
import type { WorkflowTaskRetry } from "./model.js";
import type { Wakeups } from "./wakeups.js";

export interface Engine {
  readonly sql: Sql;
  readonly db: Drizzle;
  readonly wakeups: Wakeups;
  readonly logger: Logger;
  /** This server's id: the origin of its NOTIFYs (it skips its own). */
  readonly origin: string;
  readonly maxPollWaitMs: number;
  readonly workflowTaskRetry: WorkflowTaskRetry;
  /** Queues known to exist (queues are never deleted in this version, so a positive answer is final). */
  readonly knownQueues: Set<string>;
  /** A commit created a timer firing at `at`: this server's timer loop wakes by then. */
  timerHint(at: Date): void;
}

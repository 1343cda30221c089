/**
 * Domain vocabulary shared by the engine and the store: statuses as they are
 * spelled in the database, dedup-key formats, queue types, and the limits
 * every layer agrees on. Pure values: the store imports this file (and only
 * this one) from the engine, so the SQL and the code read the same definitions.
 */

/** Run statuses, spelled as in dex.runs.status. */
export const RunStatus = {
  CREATED: "CREATED",
  RUNNING: "RUNNING",
  COMPLETED: "COMPLETED",
  FAILED: "FAILED",
  CANCELLED: "CANCELLED",
  TERMINATED: "TERMINATED",
  CONTINUED_AS_NEW: "CONTINUED_AS_NEW",
  /** Its run timeout passed (engine/run-timeouts.ts). */
  TIMED_OUT: "TIMED_OUT",
} as const;
export type RunStatus = (typeof RunStatus)[keyof typeof RunStatus];

/** Not ended. The SQL spelling is store/vocabulary.ts openStatuses (the partial unique index's predicate). */
export const OPEN_STATUSES: readonly RunStatus[] = [RunStatus.CREATED, RunStatus.RUNNING];

/** Ended without success: the latest runs the reuse policy 'allow_if_failed' lets a new run follow. */
export const UNSUCCESSFUL_STATUSES: readonly RunStatus[] = [
  RunStatus.FAILED,
  RunStatus.CANCELLED,
  RunStatus.TERMINATED,
  RunStatus.TIMED_OUT,
];

export function isTerminal(status: RunStatus): boolean {
  return !OPEN_STATUSES.includes(status);
}

/**
 * Dedup keys of history and inbox rows, `<kind>:<id>`: the unique indexes
 * history_events_dedup and inbox_dedup (run_id, dedup_key) let each input
 * reach a run at most once. Built and parsed only here; SQL that builds or
 * matches one takes its prefix from dedupPrefix (see store/vocabulary.ts).
 */
export const DedupKind = {
  /** A command that claims a seq (schedule activity, start timer, wait for event, ...). */
  SEQ: "seq",
  /** A timer or event-wait time-out that fired (id: its seq). */
  TIMER: "timer",
  /** An external event (id: the caller's event id, which may itself hold colons). */
  EVENT: "event",
  /** An activity's outcome (id: its seq). */
  ACTIVITY_RESULT: "activity-result",
  /** A child run started or failed to start (id: the parent's seq). */
  CHILD_START: "child-start",
  /** A child run ended (id: the parent's seq). */
  CHILD_END: "child-end",
  /** An update request, in the inbox and then as `update_accepted` (id: the caller's update id). */
  UPDATE: "update",
  /** An update's outcome, `update_completed` (id: the update id). */
  UPDATE_COMPLETED: "update-completed",
} as const;
export type DedupKind = (typeof DedupKind)[keyof typeof DedupKind];

export function dedupPrefix(kind: DedupKind): string {
  return `${kind}:`;
}

export function dedupKey(kind: DedupKind, id: number | string): string {
  return dedupPrefix(kind) + String(id);
}

/** The id of a key of this kind; undefined for a key of another kind. */
export function dedupId(kind: DedupKind, key: string): string | undefined {
  const prefix = dedupPrefix(kind);
  return key.startsWith(prefix) ? key.slice(prefix.length) : undefined;
}

/** The seq of a seq-numbered key of this kind; undefined for another kind or a malformed id. */
export function dedupSeq(kind: DedupKind, key: string): number | undefined {
  const id = dedupId(kind, key);
  return id !== undefined && /^\d+$/.test(id) ? Number(id) : undefined;
}

/** Task queue types, spelled as in dex.task_queues.type. */
export const QueueType = { WORKFLOW: "workflow", ACTIVITY: "activity" } as const;
export type QueueType = (typeof QueueType)[keyof typeof QueueType];

export const DEFAULT_QUEUE = "default";
export const DEFAULT_PRIORITY = 50;

/** Workflow task lease: long enough for a replay, short enough that a crashed worker costs little. */
export const WORKFLOW_TASK_LEASE_MS = 10_000;
/** Activity attempt lease when the call sets no start-to-close timeout. */
export const DEFAULT_START_TO_CLOSE_MS = 5 * 60_000;
/** Upper bound for any duration a caller may set (timeouts, intervals): about ten years. */
export const MAX_DURATION_MS = 10 * 365 * 24 * 3600_000;
/** Inline the history in a workflow task only below this size; larger histories are paged by the worker. */
export const MAX_INLINE_HISTORY_BYTES = 2 * 1024 * 1024;
/** Commands accepted in one workflow task completion. */
export const MAX_COMMANDS_PER_TASK = 10_000;

/** A task queue name: what the migration's check constraint accepts. */
export const QUEUE_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** Back-off schedule of failed workflow tasks (doubling), per docs/worker-protocol.md. */
export interface WorkflowTaskRetry {
  initialMs: number;
  maxMs: number;
  /** After a WorkflowTaskDeadlock failure (decision 0032): doubling too, much further. Default DEADLOCK_TASK_RETRY. */
  afterDeadlock?: { initialMs: number; maxMs: number };
}
/** Sticky routing's wait for the worker that holds a run (server option stickyFallbackMs); Temporal's is 5 s. */
export const DEFAULT_STICKY_FALLBACK_MS = 3_000;
export const DEFAULT_WORKFLOW_TASK_RETRY: WorkflowTaskRetry = { initialMs: 1_000, maxMs: 10_000 };
/**
 * Back-off after workflow code did not yield (the worker's watchdog stopped its process, decision
 * 0014): each retry costs a worker process, so 10 s doubling to 10 min (decision 0032).
 */
export const DEADLOCK_TASK_RETRY = { initialMs: 10_000, maxMs: 600_000 } as const;
/** The failure type the SDK's deadlock watchdog reports (sdk-ts/src/worker/deadlock-watchdog.ts). */
export const WORKFLOW_TASK_DEADLOCK = "WorkflowTaskDeadlock";

/** What fences one attempt of a workflow task: its key plus the lease. */
export interface WorkflowTaskRef {
  queue: string;
  runId: string;
  leaseId: string;
  lockVersion: number;
}

/** What fences one attempt of an activity task. */
export interface ActivityTaskRef extends WorkflowTaskRef {
  seq: number;
  /** The attempt the lease was granted for (tokens issued before version 2 lack it). */
  attempt?: number;
}

/**
 * What the engine reports about its own work, in-process and synchronously:
 * the poll and completion paths call these after the fact, with values the
 * database already returned, so observing costs no statement. The server
 * combines the metrics (when enabled) and the poll tracker (always: describe
 * needs it) behind this one interface.
 */
import type { QueueType } from "../engine/model.js";

export type TaskOutcome = "completed" | "failed";

export interface EngineObserver {
  /** A poll answered, handing out `tasks` tasks (0: it came back empty). */
  polled(type: QueueType, queue: string, tasks: number): void;
  /** A task was handed out `waitedMs` after it became available (database clock). */
  dispatched(type: QueueType, queue: string, waitedMs: number): void;
  /** `tasks` tasks were handed out eagerly, in a workflow-task completion's answer instead of a poll's (committed; also counted by dispatched). */
  dispatchedEagerly(type: QueueType, queue: string, tasks: number): void;
  /**
   * An attempt ended `ms` after its claim. Activities: the database clock
   * alone. Workflow tasks: this server's clock at commit minus the claim's
   * database time (the completion reads no clock), so skew between the two
   * hosts shifts it; clamped at 0.
   */
  executed(type: QueueType, queue: string, outcome: TaskOutcome, ms: number): void;
  /** A run was created on this workflow queue (committed). */
  runStarted(queue: string): void;
  /** A run of this workflow queue reached a terminal status (committed). */
  runEnded(queue: string, status: string): void;
  /** A group commit wrote `size` requests of this operation in one batch (committed). */
  committedBatch(operation: string, size: number): void;
  /** A worker reported a workflow task of this queue failed, with its cause's name (committed). */
  workflowTaskFailed(queue: string, cause: string): void;
  /** Ended runs of this workflow queue were deleted (committed), by the retention sweep or a DeleteRun request. */
  runsDeleted?(queue: string, by: "sweep" | "request", count: number): void;
}

export const noopObserver: EngineObserver = {
  polled() {},
  dispatched() {},
  dispatchedEagerly() {},
  executed() {},
  runStarted() {},
  runEnded() {},
  committedBatch() {},
  workflowTaskFailed() {},
};

/** One observer that forwards each report to every part that handles it. */
export function combineObservers(...parts: Array<Partial<EngineObserver> | undefined>): EngineObserver {
  const list = parts.filter((p): p is Partial<EngineObserver> => p !== undefined);
  return {
    polled: (type, queue, tasks) => list.forEach((p) => p.polled?.(type, queue, tasks)),
    dispatched: (type, queue, waitedMs) => list.forEach((p) => p.dispatched?.(type, queue, waitedMs)),
    dispatchedEagerly: (type, queue, tasks) => list.forEach((p) => p.dispatchedEagerly?.(type, queue, tasks)),
    executed: (type, queue, outcome, ms) => list.forEach((p) => p.executed?.(type, queue, outcome, ms)),
    runStarted: (queue) => list.forEach((p) => p.runStarted?.(queue)),
    runEnded: (queue, status) => list.forEach((p) => p.runEnded?.(queue, status)),
    committedBatch: (operation, size) => list.forEach((p) => p.committedBatch?.(operation, size)),
    workflowTaskFailed: (queue, cause) => list.forEach((p) => p.workflowTaskFailed?.(queue, cause)),
    runsDeleted: (queue, by, count) => list.forEach((p) => p.runsDeleted?.(queue, by, count)),
  };
}

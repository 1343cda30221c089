/**
 * Workflow tasks: poll (claim + history), fail (back-off) and hand back;
 * completion is in completion.ts. Whatever makes a task claimable again wakes
 * this server's parked polls in-process and the other servers' after the
 * statement (engine/notifier.ts; a back-off when it comes due, engine/wakeups.ts).
 */
import { DexError, FailureKind, WorkflowTaskFailedCause, type Failure, type HistoryEvent } from "@dex/proto";
import { readHistories } from "../store/history.js";
import {
  claimWorkflowTasks,
  failWorkflowTask as failTaskRow,
  releaseWorkflowTask,
  releaseWorkflowTasks,
  stickyTasksWaiting,
} from "../store/workflow-tasks.js";
import type { Engine } from "./context.js";
import { decodeEvent, encodeFailure } from "./events.js";
import { longPoll } from "./long-poll.js";
import {
  DEADLOCK_TASK_RETRY,
  MAX_INLINE_HISTORY_BYTES,
  QueueType,
  WORKFLOW_TASK_DEADLOCK,
  WORKFLOW_TASK_LEASE_MS,
  type WorkflowTaskRef,
} from "./model.js";
import { announceQueues } from "./notifier.js";
import { workflowTaskBackoffMs } from "./retry.js";
import type { Subscription } from "./wakeups.js";

export interface PolledWorkflowTask {
  ref: WorkflowTaskRef;
  instanceId: string;
  workflowName: string;
  attempt: number;
  taskTime: Date;
  /** When the lease ends: task_time plus the lease, both set by the claim. */
  leaseDeadline: Date;
  historyLength: number;
  history: HistoryEvent[];
  newEvents: HistoryEvent[];
  /** The run's W3C trace context, handed to the worker as WorkflowTask.trace_context; null: none. */
  traceContext: Record<string, string> | null;
}

export async function pollWorkflowTasks(
  engine: Engine,
  request: { queue: string; maxTasks: number; workerId: string; waitUntil: number },
  signal: AbortSignal,
): Promise<PolledWorkflowTask[]> {
  // Whether the wake that led to this check came by name only (another poll passed it on).
  let previous: Subscription | undefined;
  let wokenByName = false;
  const tasks = await longPoll({
    subscribe: () => {
      wokenByName = previous?.byName === true;
      previous = engine.wakeups.subscribeQueue(QueueType.WORKFLOW, request.queue, request.workerId);
      return previous;
    },
    check: async () => {
      const claimed = await claimWithHistory(engine, request);
      if (claimed.length === 0) {
        // A wake that came by name is not passed on again: on a paused or full queue every claim
        // is empty, and two owners would otherwise wake each other in a loop until the fallback.
        if (!wokenByName) await passStickyWake(engine, request);
        return undefined;
      }
      // A full batch suggests more work: let another parked poll look.
      if (claimed.length === request.maxTasks) engine.wakeups.wakeQueue(QueueType.WORKFLOW, request.queue);
      return claimed;
    },
    until: request.waitUntil,
    // Per-queue fallback ticks (server.ts) cover lost wakes; no per-poll re-check.
    fallbackMs: Number.POSITIVE_INFINITY,
    signal,
    closing: () => engine.wakeups.isClosed,
    onSpareWake: () => engine.wakeups.wakeQueue(QueueType.WORKFLOW, request.queue),
  });
  if (tasks && signal.aborted) {
    // The caller is gone: hand the tasks back rather than let them sit out a lease.
    const released = await releaseWorkflowTasks(engine.dispatchSql ?? engine.sql, tasks.map((t) => t.ref)).catch((err: unknown) => {
      engine.logger.warn("could not release workflow tasks of a cancelled poll", { err });
      return 0;
    });
    engine.wakeups.wakeQueue(QueueType.WORKFLOW, request.queue, tasks.length);
    if (released > 0) announceQueues(engine, QueueType.WORKFLOW, [request.queue]);
    return [];
  }
  engine.observer.polled(QueueType.WORKFLOW, request.queue, tasks?.length ?? 0);
  return tasks ?? [];
}

/**
 * A queue wake reaches the oldest parked poll, which may not be the worker a
 * new task is sticky to: a poll that claimed nothing wakes the owners of the
 * sticky tasks it left alone by name (if they are parked on this server; on
 * another server, the NOTIFY woke a poll there that does the same), and wakes
 * its queue when the oldest of them falls back to any worker, so no poll
 * re-checks in between (no busy polling; the fallback tick covers a lost
 * timer). The delay comes from the database's clock, which decides the
 * fallback; 50 ms of slack for the time the answer took to arrive. That wake
 * stays on this server ("here"): a poll parked elsewhere that left the same
 * tasks alone armed its own.
 */
async function passStickyWake(engine: Engine, request: { queue: string; workerId: string }): Promise<void> {
  if (engine.stickyFallbackMs === 0) return;
  const waiting = await stickyTasksWaiting(engine.dispatchSql ?? engine.sql, {
    queue: request.queue,
    workerId: request.workerId,
    stickyFallbackMs: engine.stickyFallbackMs,
  });
  for (const workerId of waiting.workerIds) engine.wakeups.wakeWorker(QueueType.WORKFLOW, request.queue, workerId);
  if (waiting.fallbackInMs !== undefined) {
    engine.wakeups.wakeQueueAt(QueueType.WORKFLOW, request.queue, new Date(Date.now() + Math.max(0, waiting.fallbackInMs) + 50), "here");
  }
}

/** The claim and the tasks' histories; `runId`: only that run's task (eager workflow start, engine/eager-start.ts). */
export async function claimWithHistory(
  engine: Engine,
  request: { queue: string; maxTasks: number; workerId: string; runId?: string },
): Promise<PolledWorkflowTask[]> {
  const sql = engine.dispatchSql ?? engine.sql;
  const claimed = await claimWorkflowTasks(sql, {
    queue: request.queue,
    limit: request.maxTasks,
    workerId: request.workerId,
    leaseMs: WORKFLOW_TASK_LEASE_MS,
    stickyFallbackMs: engine.stickyFallbackMs,
    runId: request.runId,
  });
  if (claimed.length === 0) return [];
  for (const task of claimed) {
    engine.observer.dispatched(QueueType.WORKFLOW, request.queue, task.taskTime.getTime() - task.availableAt.getTime());
  }
  // History is skipped when this worker completed the run's previous task
  // (it caches the run) and this is a first attempt (a retried task may have
  // failed because the cache was wrong), and when it is too large to inline.
  // The budget is per answer, not per run: a batch of large histories would
  // otherwise exceed the client's default 4 MB message limit.
  let budget = MAX_INLINE_HISTORY_BYTES;
  const needHistory: string[] = [];
  for (const task of claimed) {
    if (task.stickyWorkerId === request.workerId && task.attempt === 1) continue;
    if (task.historySize > budget) continue;
    budget -= task.historySize;
    needHistory.push(task.runId);
  }
  const histories = await readHistories(sql, needHistory);
  return claimed.map((task) => ({
    ref: { queue: task.queue, runId: task.runId, leaseId: task.leaseId, lockVersion: task.lockVersion },
    instanceId: task.instanceId,
    workflowName: task.workflowName,
    traceContext: task.traceContext,
    attempt: task.attempt,
    taskTime: task.taskTime,
    // The claim set the lease to task_time + the run's lease in the same statement (database clock).
    leaseDeadline: new Date(task.taskTime.getTime() + task.leaseMs),
    historyLength: task.historyLength,
    history: (histories.get(task.runId) ?? []).map(decodeEvent),
    newEvents: task.inboxIds.map((id, i) => {
      const row = task.inbox[i];
      if (!row || task.inbox.length !== task.inboxIds.length) {
        throw new Error(`inbox row ${id} handed out with run ${task.runId} is missing`);
      }
      return decodeEvent({ sequence: task.historyLength + 1 + i, event: row.event, createdAt: row.createdAt });
    }),
  }));
}

export function taskNotFound(): DexError {
  return new DexError(
    "NOT_FOUND",
    "task not found: it was already completed, or its lease expired and it was handed out again",
  );
}

/**
 * Fails a workflow task: nothing goes to history; the task is retried after a back-off, a much
 * longer one after a WorkflowTaskDeadlock (decision 0032).
 */
export async function failWorkflowTask(
  engine: Engine,
  ref: WorkflowTaskRef,
  failure: Failure,
  cause: WorkflowTaskFailedCause,
): Promise<{ nextAttemptAt: Date }> {
  if (cause === WorkflowTaskFailedCause.NON_DETERMINISM && failure.kind === FailureKind.UNSPECIFIED) {
    failure.kind = FailureKind.NON_DETERMINISM;
  }
  // Workflow code that never yields costs a worker process per attempt (the watchdog stops it):
  // retrying it on the usual schedule (≤ 10 s) would stop a fleet's processes in a loop.
  const deadlock = failure.type === WORKFLOW_TASK_DEADLOCK;
  const schedule = deadlock ? (engine.workflowTaskRetry.afterDeadlock ?? DEADLOCK_TASK_RETRY) : engine.workflowTaskRetry;
  const result = await failTaskRow(engine.sql, ref, {
    failure: encodeFailure(failure)!,
    backoffMs: (attempt) => workflowTaskBackoffMs(schedule, attempt),
  });
  if (!result) throw taskNotFound();
  engine.observer.workflowTaskFailed(ref.queue, WorkflowTaskFailedCause[cause] ?? String(cause));
  // When the back-off ends: a poll here, and (announced then) the other servers' polls.
  engine.wakeups.wakeQueueAt(QueueType.WORKFLOW, ref.queue, result.nextAttemptAt);
  engine.logger.warn(deadlock ? "workflow task failed: its workflow code did not yield; backing off longer" : "workflow task failed", {
    runId: ref.runId,
    cause: WorkflowTaskFailedCause[cause],
    failure: failure.message,
    nextAttemptAt: result.nextAttemptAt.toISOString(),
  });
  return result;
}

/**
 * Hands a leased task back unused (store releaseWorkflowTask: fenced, visible
 * at once, the attempt not counted) and, if it was still this token's, tells
 * the other servers' parked polls after the statement. This server's polls
 * are the caller's to wake (completion.ts abortForUnseenInputs does).
 */
export async function handBackWorkflowTask(engine: Engine, ref: WorkflowTaskRef): Promise<boolean> {
  const released = await releaseWorkflowTask(engine.sql, ref);
  if (released) announceQueues(engine, QueueType.WORKFLOW, [ref.queue]);
  return released;
}

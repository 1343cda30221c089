/** Activity tasks: poll, complete, fail with retries, heartbeat, and the lease reaper. */
import { fromBinary } from "@bufbuild/protobuf";
import { ActivityScheduledAttributesSchema, TimeoutType, type Failure, type Payload } from "@dex/proto";
import type { TaskOutcome } from "../metrics/observer.js";
import {
  claimActivityTasks,
  deleteActivity,
  findReapable,
  heartbeatActivity,
  insertInboxEvent,
  lockActivity,
  lockLeasedActivity,
  releaseActivityTasks,
  scheduleRetry,
  type ActivityTaskRow,
  type ReapCandidate,
} from "../store/activity-tasks.js";
import { lockRun, type LockedRun } from "../store/completion.js";
import type { Queryable } from "../store/db.js";
import { queueWakeupPayload } from "../store/notify.js";
import { ensureWorkflowTask } from "../store/workflow-tasks.js";
import { submitActivityCompletion } from "./activity-completions.js";
import type { Engine } from "./context.js";
import { activityResultDedupKey, decodeFailure, encodeEvent, encodeFailure, encodePayload } from "./events.js";
import { longPoll } from "./long-poll.js";
import { isTerminal, QueueType, type ActivityTaskRef, type RunStatus } from "./model.js";
import { decideActivityRetry, timeoutFailure } from "./retry.js";
import { taskNotFound } from "./workflow-tasks.js";

export interface PolledActivityTask {
  ref: ActivityTaskRef & { attempt: number };
  row: ActivityTaskRow;
  /** Since when the attempt was available (database clock), for the dispatch latency. */
  availableAt: Date;
}

export async function pollActivityTasks(
  engine: Engine,
  request: { queue: string; maxTasks: number; workerId: string; waitUntil: number },
  signal: AbortSignal,
): Promise<PolledActivityTask[]> {
  const tasks = await longPoll({
    subscribe: () => engine.wakeups.subscribeQueue(QueueType.ACTIVITY, request.queue),
    check: async () => {
      const rows = await claimActivityTasks(engine.sql, { queue: request.queue, limit: request.maxTasks, workerId: request.workerId });
      if (rows.length === 0) return undefined;
      if (rows.length === request.maxTasks) engine.wakeups.wakeQueue(QueueType.ACTIVITY, request.queue);
      return rows.map(({ availableAt, ...row }) => ({
        row,
        availableAt,
        ref: { queue: row.queue, runId: row.runId, seq: row.seq, leaseId: row.leaseId!, lockVersion: row.lockVersion, attempt: row.attempt },
      }));
    },
    until: request.waitUntil,
    fallbackMs: Number.POSITIVE_INFINITY,
    signal,
    closing: () => engine.wakeups.isClosed,
    onSpareWake: () => engine.wakeups.wakeQueue(QueueType.ACTIVITY, request.queue),
  });
  if (tasks && signal.aborted) {
    await releaseActivityTasks(engine.sql, tasks.map((t) => t.ref)).catch((err: unknown) =>
      engine.logger.warn("could not release activity tasks of a cancelled poll", { err }),
    );
    engine.wakeups.wakeQueue(QueueType.ACTIVITY, request.queue, tasks.length);
    return [];
  }
  engine.observer.polled(QueueType.ACTIVITY, request.queue, tasks?.length ?? 0);
  for (const { row, availableAt } of tasks ?? []) {
    // Database clock on both sides: from when the attempt could be handed out to when it was.
    engine.observer.dispatched(QueueType.ACTIVITY, row.queue, row.now.getTime() - availableAt.getTime());
  }
  return tasks ?? [];
}

/**
 * Locks the run then the fenced task (the lock order); NOT_FOUND if the attempt is no longer
 * current. The two statements are pipelined: one session runs them in the order sent, so the run
 * is still locked first, and the transaction waits for one round trip instead of two.
 */
async function lockAttempt(tx: Queryable, ref: ActivityTaskRef): Promise<{ run: LockedRun; task: ActivityTaskRow }> {
  const [run, task] = await Promise.all([lockRun(tx, ref.runId), lockLeasedActivity(tx, ref)]);
  if (!run || isTerminal(run.status as RunStatus) || !task) throw taskNotFound();
  return { run, task };
}

/** Puts the final outcome in the inbox and makes sure the run has a workflow task to receive it. */
async function deliverOutcome(
  engine: Engine,
  tx: Queryable,
  run: LockedRun,
  task: ActivityTaskRow,
  attributes: Parameters<typeof encodeEvent>[0],
): Promise<boolean> {
  const event = encodeEvent(attributes);
  // Independent writes under the run and task locks: pipelined, one round trip. If one fails the
  // transaction is rolled back whole.
  const [, , woke] = await Promise.all([
    deleteActivity(tx, task),
    insertInboxEvent(tx, { runId: run.id, kind: event.kind, event: event.event, dedupKey: activityResultDedupKey(task.seq) }),
    ensureWorkflowTask(tx, {
      queue: run.taskQueue,
      runId: run.id,
      priority: run.priority,
      notify: queueWakeupPayload(QueueType.WORKFLOW, run.taskQueue, engine.origin),
    }),
  ]);
  return woke;
}

/**
 * Records an activity's result: through the group commit when the token names its attempt
 * (engine/activity-completions.ts), else, or when the batch could not take it, one by one.
 */
export async function completeActivityTask(engine: Engine, ref: ActivityTaskRef, result: Payload | undefined): Promise<void> {
  if (ref.attempt !== undefined) {
    const outcome = await submitActivityCompletion(engine, { ref: { ...ref, attempt: ref.attempt }, result });
    if ("done" in outcome) {
      observeExecution(engine, outcome.done, "completed");
      return;
    }
  }
  await completeActivityTaskAlone(engine, ref, result);
}

/** One completion in its own transaction; waits for the run's lock. */
async function completeActivityTaskAlone(engine: Engine, ref: ActivityTaskRef, result: Payload | undefined): Promise<void> {
  const { queue, woke, task } = await engine.sql.begin(async (tx) => {
    const { run, task } = await lockAttempt(tx, ref);
    const woke = await deliverOutcome(engine, tx, run, task, {
      case: "activityCompleted",
      value: { seq: task.seq, result, attempt: task.attempt },
    });
    return { queue: run.taskQueue, woke, task };
  });
  if (woke) engine.wakeups.wakeQueue(QueueType.WORKFLOW, queue);
  observeExecution(engine, task, "completed");
}

/**
 * Claim to outcome, on the database clock alone: the claim set
 * attempt_deadline = claim + start-to-close, and the row was read with now().
 */
function observeExecution(
  engine: Engine,
  task: Pick<ActivityTaskRow, "attemptDeadline" | "startToCloseMs" | "leaseMs" | "queue" | "now">,
  outcome: TaskOutcome,
): void {
  if (!task.attemptDeadline) return;
  const claimedAt = task.attemptDeadline.getTime() - (task.startToCloseMs ?? task.leaseMs);
  engine.observer.executed(QueueType.ACTIVITY, task.queue, outcome, task.now.getTime() - claimedAt);
}

export type AttemptOutcome = { willRetry: true; nextAttemptAt: Date } | { willRetry: false };

/**
 * One failed attempt through the retry policy: either the task waits for its
 * next attempt (no history), or the final failure goes to the inbox. An
 * activity whose cancellation was requested while this attempt ran is never
 * retried: the workflow has given up on it, and its outcome is delivered
 * only so that the call is closed (the SDK ignores it).
 */
async function failAttempt(
  engine: Engine,
  tx: Queryable,
  run: LockedRun,
  task: ActivityTaskRow,
  failure: Failure,
  nextRetryDelayMs: number | undefined,
  final = false,
): Promise<AttemptOutcome & { wokeWorkflow: boolean }> {
  const options = fromBinary(ActivityScheduledAttributesSchema, task.options);
  const decision = final ? ({ retry: false, failure } as const) : decideActivityRetry({
    policy: options.retryPolicy!,
    attempt: task.attempt,
    failure,
    nextRetryDelayMs,
    nowMs: task.now.getTime(),
    scheduleToCloseDeadlineMs: task.scheduleToCloseDeadline?.getTime(),
    cancelRequested: task.cancelRequested,
  });
  if (decision.retry) {
    const nextAttemptAt = await scheduleRetry(tx, task, { delayMs: decision.delayMs, failure: encodeFailure(failure)! });
    return { willRetry: true, nextAttemptAt, wokeWorkflow: false };
  }
  const wokeWorkflow = await deliverOutcome(engine, tx, run, task, {
    case: "activityFailed",
    value: { seq: task.seq, failure: decision.failure, attempt: task.attempt },
  });
  return { willRetry: false, wokeWorkflow };
}

function afterAttempt(engine: Engine, task: ActivityTaskRow, outcome: AttemptOutcome & { wokeWorkflow: boolean }): void {
  if (outcome.willRetry) engine.wakeups.wakeQueueAt(QueueType.ACTIVITY, task.queue, outcome.nextAttemptAt);
  if (outcome.wokeWorkflow) engine.wakeups.wakeQueue(QueueType.WORKFLOW, task.workflowQueue);
}

export async function failActivityTask(
  engine: Engine,
  ref: ActivityTaskRef,
  failure: Failure,
  nextRetryDelayMs: number | undefined,
): Promise<AttemptOutcome> {
  const { task, outcome } = await engine.sql.begin(async (tx) => {
    const { run, task } = await lockAttempt(tx, ref);
    return { task, outcome: await failAttempt(engine, tx, run, task, failure, nextRetryDelayMs) };
  });
  afterAttempt(engine, task, outcome);
  observeExecution(engine, task, "failed");
  return outcome.willRetry ? { willRetry: true, nextAttemptAt: outcome.nextAttemptAt } : { willRetry: false };
}

export async function heartbeatActivityTask(
  engine: Engine,
  ref: ActivityTaskRef,
  details: Payload | undefined,
): Promise<{ leaseDeadline: Date; cancelRequested: boolean }> {
  const result = await heartbeatActivity(engine.sql, ref, { details: encodePayload(details) });
  if (!result) throw taskNotFound();
  return result;
}

/**
 * One pass of the lease reaper: expired activity leases become timed-out
 * attempts and waiting tasks past their schedule-to-close deadline fail for
 * good. Each candidate gets its own short transaction that locks the run
 * (SKIP LOCKED: a busy run is retried on the next pass) and re-checks the
 * fence, so concurrent reapers on several servers fail each attempt exactly
 * once. Returns how many it handled.
 */
export async function reapOnce(engine: Engine, limit = 100): Promise<number> {
  const candidates = await findReapable(engine.sql, limit);
  let handled = 0;
  for (const candidate of candidates) {
    if (engine.wakeups.isClosed) break;
    const result = await engine.sql.begin((tx) => reapOne(engine, tx, candidate));
    if (result) {
      afterAttempt(engine, result.task, result.outcome);
      handled++;
    }
  }
  return handled;
}

/**
 * Why a lease ran out. The lease is the least of (last claim or heartbeat +
 * lease_ms, attempt_deadline, schedule_to_close_deadline), so the bound it
 * equals names the timeout: the schedule-to-close deadline ends the activity
 * (not retried); the attempt deadline is the start-to-close cap; otherwise a
 * heartbeat was due (lease_ms is the heartbeat timeout when there is one;
 * without one, lease_ms is start-to-close and the lease ends at the attempt
 * deadline). Checked in that order because the bounds can coincide.
 */
export function expiredLeaseTimeout(task: ActivityTaskRow, hasHeartbeatTimeout: boolean): TimeoutType {
  const end = task.leasedUntil!.getTime();
  if (task.scheduleToCloseDeadline && end >= task.scheduleToCloseDeadline.getTime()) return TimeoutType.SCHEDULE_TO_CLOSE;
  if (!hasHeartbeatTimeout || (task.attemptDeadline && end >= task.attemptDeadline.getTime())) return TimeoutType.START_TO_CLOSE;
  return TimeoutType.HEARTBEAT;
}

async function reapOne(engine: Engine, tx: Queryable, candidate: ReapCandidate) {
  const run = await lockRun(tx, candidate.runId, true);
  if (!run || isTerminal(run.status as RunStatus)) return undefined;
  const task = await lockActivity(tx, candidate);
  if (!task) return undefined;
  const now = task.now.getTime();
  let failure: Failure;
  let final: boolean;
  if (candidate.reason === "lease_expired") {
    const stillSameAttempt =
      task.leaseId === candidate.leaseId && task.lockVersion === candidate.lockVersion && task.leasedUntil !== null;
    if (!stillSameAttempt || task.leasedUntil!.getTime() > now) return undefined;
    const options = fromBinary(ActivityScheduledAttributesSchema, task.options);
    const timeoutType = expiredLeaseTimeout(task, options.heartbeatTimeout !== undefined);
    final = timeoutType === TimeoutType.SCHEDULE_TO_CLOSE;
    failure =
      timeoutType === TimeoutType.SCHEDULE_TO_CLOSE
        ? timeoutFailure(
            timeoutType,
            `activity ${task.activityName} did not complete within its schedule-to-close timeout (attempt ${task.attempt} was running)`,
            decodeFailure(task.lastFailure),
          )
        : timeoutFailure(
            timeoutType,
            timeoutType === TimeoutType.HEARTBEAT
              ? `activity ${task.activityName} attempt ${task.attempt} sent no heartbeat within its heartbeat timeout`
              : `activity ${task.activityName} attempt ${task.attempt} did not complete within its start-to-close timeout`,
          );
  } else {
    if (task.leasedUntil !== null || !task.scheduleToCloseDeadline || task.scheduleToCloseDeadline.getTime() > now) {
      return undefined;
    }
    final = true;
    failure = timeoutFailure(
      TimeoutType.SCHEDULE_TO_CLOSE,
      `activity ${task.activityName} did not complete within its schedule-to-close timeout`,
      decodeFailure(task.lastFailure),
    );
  }
  const outcome = await failAttempt(engine, tx, run, task, failure, undefined, final);
  engine.logger.info("activity attempt timed out", {
    runId: task.runId,
    seq: task.seq,
    activity: task.activityName,
    attempt: task.attempt,
    timeoutType: TimeoutType[failure.timeoutType],
    willRetry: outcome.willRetry,
  });
  return { task, outcome };
}

/** Decoded options of a task, for the API's ActivityTask message. */
export function activityOptions(task: ActivityTaskRow) {
  return fromBinary(ActivityScheduledAttributesSchema, task.options);
}

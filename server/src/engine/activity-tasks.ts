/** Activity tasks: poll, complete, fail with retries, heartbeat, and the lease reaper. */
import { fromBinary } from "@bufbuild/protobuf";
import { ActivityScheduledAttributesSchema, TimeoutType, type Failure, type Payload } from "@dex/proto";
import type { TaskOutcome } from "../metrics/observer.js";
import {
  claimActivityTasks,
  findReapable,
  heartbeatActivity,
  readLeasedActivity,
  releaseActivityTasks,
  type ActivityTaskRow,
  type ReapCandidate,
} from "../store/activity-tasks.js";
import type { WrittenActivityOutcome } from "../store/activity-completions.js";
import { writeActivityOutcome, writeOutcomes, type AttemptResult } from "./activity-completions.js";
import type { Engine } from "./context.js";
import { decodeFailure, encodePayload } from "./events.js";
import { longPoll } from "./long-poll.js";
import { QueueType, type ActivityTaskRef } from "./model.js";
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
 * Records an activity's result (engine/activity-completions.ts: the one outcome write, batched).
 * The token must name its attempt: see api/task-token.ts on version 1 tokens.
 */
export async function completeActivityTask(engine: Engine, ref: ActivityTaskRef, result: Payload | undefined): Promise<void> {
  const written = await writeActivityOutcome(engine, { ref: withAttempt(ref), result: { case: "completed", result } });
  observeExecution(engine, written, "completed");
}

function withAttempt(ref: ActivityTaskRef): ActivityTaskRef & { attempt: number } {
  // Only a version 1 token lacks the attempt, and those are refused when decoded.
  if (ref.attempt === undefined) throw taskNotFound();
  return { ...ref, attempt: ref.attempt };
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
 * next attempt (no history), or the final failure goes to the inbox. The
 * policy is decided here from the task as read (unlocked: what it reads of a
 * fenced attempt cannot change, but for a cancellation request, which the
 * outcome write re-checks under the run lock); the write is the same as a
 * completion's. An activity whose cancellation was requested while this
 * attempt ran is never retried: the workflow has given up on it, and its
 * outcome is delivered only so that the call is closed (the SDK ignores it).
 */
function failedAttempt(task: ActivityTaskRow, failure: Failure, nextRetryDelayMs: number | undefined, final: boolean): AttemptResult {
  if (final) return { case: "failed", failure };
  const decision = decideActivityRetry({
    policy: activityOptions(task).retryPolicy!,
    attempt: task.attempt,
    failure,
    nextRetryDelayMs,
    nowMs: task.now.getTime(),
    scheduleToCloseDeadlineMs: task.scheduleToCloseDeadline?.getTime(),
    cancelRequested: task.cancelRequested,
  });
  return decision.retry ? { case: "failed", failure, retryAfterMs: decision.delayMs } : { case: "failed", failure: decision.failure };
}

function attemptOutcome(written: WrittenActivityOutcome): AttemptOutcome {
  return written.nextAttemptAt ? { willRetry: true, nextAttemptAt: written.nextAttemptAt } : { willRetry: false };
}

export async function failActivityTask(
  engine: Engine,
  ref: ActivityTaskRef,
  failure: Failure,
  nextRetryDelayMs: number | undefined,
): Promise<AttemptOutcome> {
  const fenced = withAttempt(ref);
  const task = await readLeasedActivity(engine.sql, fenced);
  if (!task) throw taskNotFound();
  const written = await writeActivityOutcome(engine, { ref: fenced, result: failedAttempt(task, failure, nextRetryDelayMs, false) });
  observeExecution(engine, written, "failed");
  return attemptOutcome(written);
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
 * good. The candidates are read unlocked (once a lease ran out or the
 * deadline passed, nothing can revive the attempt: heartbeats and claims
 * refuse it), decided here, and written by the one outcome write, fenced by
 * the attempt read, all in one statement in its `skip` form: a busy run is
 * retried on the next pass, and of a reaper and a completion (or two reapers
 * on several servers) only the first writes. Returns how many it handled.
 */
export async function reapOnce(engine: Engine, limit = 100): Promise<number> {
  const candidates = await findReapable(engine.sql, limit);
  if (candidates.length === 0 || engine.wakeups.isClosed) return 0;
  const timedOut = candidates.map(timedOutAttempt);
  const answers = await writeOutcomes(
    engine,
    candidates.map((task, i) => ({
      ref: { queue: task.queue, runId: task.runId, seq: task.seq, leaseId: task.leaseId, lockVersion: task.lockVersion, attempt: task.attempt },
      result: failedAttempt(task, timedOut[i]!.failure, undefined, timedOut[i]!.final),
    })),
    "skip",
  );
  let handled = 0;
  answers.forEach((answer, i) => {
    if (answer.status !== "written") return;
    handled++;
    const task = candidates[i]!;
    engine.logger.info("activity attempt timed out", {
      runId: task.runId,
      workflow: task.workflowName,
      seq: task.seq,
      activity: task.activityName,
      attempt: task.attempt,
      timeoutType: TimeoutType[timedOut[i]!.failure.timeoutType],
      willRetry: answer.written.nextAttemptAt !== undefined,
    });
  });
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

/** The failure of a reaped attempt, and whether it is final (schedule-to-close) or goes through the retry policy. */
function timedOutAttempt(task: ReapCandidate): { failure: Failure; final: boolean } {
  if (task.reason === "schedule_to_close") {
    return {
      final: true,
      failure: timeoutFailure(
        TimeoutType.SCHEDULE_TO_CLOSE,
        `activity ${task.activityName} did not complete within its schedule-to-close timeout`,
        decodeFailure(task.lastFailure),
      ),
    };
  }
  const timeoutType = expiredLeaseTimeout(task, activityOptions(task).heartbeatTimeout !== undefined);
  if (timeoutType === TimeoutType.SCHEDULE_TO_CLOSE) {
    return {
      final: true,
      failure: timeoutFailure(
        timeoutType,
        `activity ${task.activityName} did not complete within its schedule-to-close timeout (attempt ${task.attempt} was running)`,
        decodeFailure(task.lastFailure),
      ),
    };
  }
  return {
    final: false,
    failure: timeoutFailure(
      timeoutType,
      timeoutType === TimeoutType.HEARTBEAT
        ? `activity ${task.activityName} attempt ${task.attempt} sent no heartbeat within its heartbeat timeout`
        : `activity ${task.activityName} attempt ${task.attempt} did not complete within its start-to-close timeout`,
    ),
  };
}

/** Decoded options of a task, for the API's ActivityTask message. */
export function activityOptions(task: ActivityTaskRow) {
  return fromBinary(ActivityScheduledAttributesSchema, task.options);
}

/**
 * Retry policy defaults and back-off math for activities and workflow tasks.
 * Pure functions: the store applies what these decide.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, durationMs } from "@bufbuild/protobuf/wkt";
import { FailureKind, FailureSchema, RetryPolicySchema, TimeoutType, type Failure, type RetryPolicy } from "@dex/proto";
import type { WorkflowTaskRetry } from "./model.js";

export const DEFAULT_INITIAL_INTERVAL_MS = 1_000;
export const DEFAULT_BACKOFF_COEFFICIENT = 2;
/** maximum_interval defaults to this many times the initial interval. */
export const DEFAULT_MAXIMUM_INTERVAL_FACTOR = 100;

/** The policy with every default filled in, as recorded in activity_scheduled. */
export function resolveRetryPolicy(policy: RetryPolicy | undefined): RetryPolicy {
  const initialMs = policy?.initialInterval ? durationMs(policy.initialInterval) : 0;
  const initial = initialMs > 0 ? initialMs : DEFAULT_INITIAL_INTERVAL_MS;
  const maximumMs = policy?.maximumInterval ? durationMs(policy.maximumInterval) : 0;
  return create(RetryPolicySchema, {
    initialInterval: durationFromMs(initial),
    backoffCoefficient: policy?.backoffCoefficient || DEFAULT_BACKOFF_COEFFICIENT,
    maximumInterval: durationFromMs(maximumMs > 0 ? maximumMs : initial * DEFAULT_MAXIMUM_INTERVAL_FACTOR),
    maximumAttempts: policy?.maximumAttempts ?? 0,
    nonRetryableErrorTypes: [...(policy?.nonRetryableErrorTypes ?? [])],
  });
}

/**
 * Delay before the attempt after `attempt` (1-based) failed:
 * min(initial × coefficient^(attempt-1), maximum).
 */
export function activityBackoffMs(policy: RetryPolicy, attempt: number): number {
  const initial = policy.initialInterval ? durationMs(policy.initialInterval) : DEFAULT_INITIAL_INTERVAL_MS;
  const maximum = policy.maximumInterval ? durationMs(policy.maximumInterval) : initial * DEFAULT_MAXIMUM_INTERVAL_FACTOR;
  const coefficient = policy.backoffCoefficient || DEFAULT_BACKOFF_COEFFICIENT;
  const delay = initial * Math.pow(coefficient, Math.max(0, attempt - 1));
  return Math.round(Math.min(Number.isFinite(delay) ? delay : maximum, maximum));
}

/** Workflow task back-off: initial doubling per attempt up to max. */
export function workflowTaskBackoffMs(retry: WorkflowTaskRetry, attempt: number): number {
  const delay = retry.initialMs * Math.pow(2, Math.max(0, attempt - 1));
  return Math.min(Number.isFinite(delay) ? delay : retry.maxMs, retry.maxMs);
}

export type RetryDecision =
  | { retry: true; delayMs: number }
  | { retry: false; failure: Failure; reason: "non_retryable" | "exhausted" | "schedule_to_close" | "cancel_requested" };

/**
 * Decides what follows a failed activity attempt. `failure` is the attempt's
 * failure; `nowMs` and the deadline come from the database clock.
 * `cancelRequested`: the workflow asked to cancel the activity while the
 * attempt ran; it wants no further attempt.
 */
export function decideActivityRetry(input: {
  policy: RetryPolicy;
  attempt: number;
  failure: Failure;
  nextRetryDelayMs?: number | undefined;
  nowMs: number;
  scheduleToCloseDeadlineMs?: number | undefined;
  cancelRequested?: boolean | undefined;
}): RetryDecision {
  const { policy, attempt, failure } = input;
  if (input.cancelRequested) return { retry: false, failure, reason: "cancel_requested" };
  if (failure.nonRetryable || (failure.type !== "" && policy.nonRetryableErrorTypes.includes(failure.type))) {
    return { retry: false, failure, reason: "non_retryable" };
  }
  if (policy.maximumAttempts > 0 && attempt >= policy.maximumAttempts) {
    return { retry: false, failure, reason: "exhausted" };
  }
  const delayMs = input.nextRetryDelayMs ?? activityBackoffMs(policy, attempt);
  const deadline = input.scheduleToCloseDeadlineMs;
  if (deadline !== undefined && input.nowMs + delayMs >= deadline) {
    return {
      retry: false,
      reason: "schedule_to_close",
      failure: timeoutFailure(
        TimeoutType.SCHEDULE_TO_CLOSE,
        "activity schedule-to-close timeout: no attempt left before the deadline",
        failure,
      ),
    };
  }
  return { retry: true, delayMs };
}

export function timeoutFailure(timeoutType: TimeoutType, message: string, cause?: Failure): Failure {
  return create(FailureSchema, { message, type: "TimeoutError", kind: FailureKind.TIMEOUT, timeoutType, cause });
}

/**
 * Error classes that cross the workflow/activity boundary. Each maps to and
 * from a protobuf Failure (see failure.ts), so a workflow can catch exactly
 * what an activity threw, with its type, details and cause chain.
 */
export { DexError } from "@dex/proto";

export interface ApplicationFailureOptions {
  message: string;
  /** Matched by retry policies' `nonRetryableErrorTypes`. Default "ApplicationFailure". */
  type?: string;
  /** When true no retry policy retries it. Default false. */
  nonRetryable?: boolean;
  /** Structured details, JSON-encoded. */
  details?: unknown;
  cause?: unknown;
}

/**
 * An error thrown by workflow or activity code on purpose: it carries a type,
 * details, and whether a retry could help. Any other Error works too (its
 * `name` becomes the failure type); this one adds `nonRetryable`.
 */
export class ApplicationFailure extends Error {
  override readonly name: string = "ApplicationFailure";
  readonly type: string;
  readonly nonRetryable: boolean;
  readonly details: unknown;

  constructor(message: string, options: Omit<ApplicationFailureOptions, "message"> = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.type = options.type ?? "ApplicationFailure";
    this.nonRetryable = options.nonRetryable ?? false;
    this.details = options.details;
  }

  /** `create({ message, type, nonRetryable, details, cause })`, or `create(message, type?, details?)` (retryable). */
  static create(options: ApplicationFailureOptions): ApplicationFailure;
  static create(message: string, type?: string, details?: unknown): ApplicationFailure;
  static create(options: ApplicationFailureOptions | string, type?: string, details?: unknown): ApplicationFailure {
    if (typeof options === "string") return new ApplicationFailure(options, { type, details });
    return new ApplicationFailure(options.message, options);
  }

  /** A retryable failure of the given type. */
  static retryable(message: string, type?: string, details?: unknown): ApplicationFailure {
    return new ApplicationFailure(message, { type, details, nonRetryable: false });
  }

  /** A failure that ends retries at once, whatever the retry policy says. */
  static nonRetryable(message: string, type?: string, details?: unknown): ApplicationFailure {
    return new ApplicationFailure(message, { type, details, nonRetryable: true });
  }
}

/**
 * What a workflow catches when an activity failed for good (retries exhausted,
 * non-retryable, timed out or cancelled). `cause` is the activity's own failure,
 * rebuilt: usually an ApplicationFailure whose `type` is the thrown error's name.
 */
export class ActivityFailure extends Error {
  override readonly name = "ActivityFailure";
  readonly activityName: string;
  readonly seq: number;
  readonly attempt: number;
  declare readonly cause: Error;

  constructor(activityName: string, seq: number, attempt: number, cause: Error, message?: string) {
    super(
      message ?? `activity "${activityName}" (seq ${seq}) failed on attempt ${attempt}: ${cause.message}`,
      { cause },
    );
    this.activityName = activityName;
    this.seq = seq;
    this.attempt = attempt;
  }
}

/** The work was cancelled on request. */
export class CancelledFailure extends Error {
  override readonly name = "CancelledFailure";
}

export type TimeoutType = "START_TO_CLOSE" | "SCHEDULE_TO_CLOSE" | "HEARTBEAT" | "EVENT_WAIT" | "UNSPECIFIED";

/** A timeout expired; `timeoutType` says which. */
export class TimeoutFailure extends Error {
  override readonly name = "TimeoutFailure";
  readonly timeoutType: TimeoutType;

  constructor(message: string, timeoutType: TimeoutType) {
    super(message);
    this.timeoutType = timeoutType;
  }
}

export type RunStatusName =
  | "UNSPECIFIED"
  | "CREATED"
  | "RUNNING"
  | "COMPLETED"
  | "FAILED"
  | "CANCELLED"
  | "TERMINATED"
  | "CONTINUED_AS_NEW";

/** Thrown by `handle.result()` when the run ended FAILED, CANCELLED or TERMINATED. */
export class WorkflowFailedError extends Error {
  override readonly name = "WorkflowFailedError";
  readonly runId: string;
  readonly status: RunStatusName;
  declare readonly cause: Error | undefined;

  constructor(runId: string, status: RunStatusName, cause: Error | undefined) {
    super(`workflow run ${runId} ended ${status}${cause ? `: ${cause.message}` : ""}`, { cause });
    this.runId = runId;
    this.status = status;
  }
}

/**
 * Replay of workflow code produced a command that differs from the recorded
 * history. Fails the workflow task, not the run: the run stays open and
 * proceeds once code that matches its history is deployed.
 */
export class NonDeterminismError extends Error {
  override readonly name = "NonDeterminismError";
}

/**
 * Workflow code did something that cannot be replayed (a timer, real I/O).
 * Fails the workflow task, not the run.
 */
export class DeterminismViolationError extends Error {
  override readonly name = "DeterminismViolationError";
}

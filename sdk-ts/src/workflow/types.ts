/**
 * Public authoring types: workflows, activities and their contexts. Pure types,
 * shared by the workflow side (which never imports Node I/O) and the worker.
 */
import type { Duration } from "../common/duration.js";
import type { Logger } from "../common/logger.js";

/** A workflow: a deterministic async function of its context and input. Register it by name. */
export type Workflow<I = any, O = any> = (ctx: WorkflowContext, input: I) => Promise<O>;

/** An activity: a plain async function that does the real work (I/O). Register it by name. */
export type Activity<I = any, O = any> = (input: I, ctx: ActivityContext) => Promise<O>;

export type WorkflowInput<W> = W extends (ctx: WorkflowContext, input: infer I) => any ? I : unknown;
export type WorkflowOutput<W> = W extends (...args: never[]) => Promise<infer O> ? O : unknown;
export type ActivityInput<A> = A extends (input: infer I, ...rest: any[]) => any ? I : unknown;
export type ActivityOutput<A> = A extends (...args: never[]) => Promise<infer O> ? O : unknown;

/** Arguments of a proxied activity call: the input may be left out when the activity takes none. */
export type ActivityArgs<I> = undefined extends I ? [input?: I] : [input: I];

/** Typed functions that schedule activities, one per activity of `A`. */
export type ActivityProxy<A> = {
  [K in keyof A]: (...args: ActivityArgs<ActivityInput<A[K]>>) => Promise<ActivityOutput<A[K]>>;
};

/** Retry policy of an activity call. Unset fields take the server's defaults. */
export interface RetryOptions {
  /** Delay before the first retry. Default 1s. */
  initialInterval?: Duration;
  /** Each retry waits this many times longer. Default 2. */
  backoffCoefficient?: number;
  /** Upper bound on the delay between attempts. Default 100 × initialInterval. */
  maximumInterval?: Duration;
  /** Total attempts, the first included; 0 = unlimited (the default), 1 = no retries. */
  maximumAttempts?: number;
  /** Failure types (an error's `name`, or ApplicationFailure's `type`) that are never retried. */
  nonRetryableErrorTypes?: string[];
}

/** Options of an activity call. */
export interface ActivityOptions {
  /** Activity task queue. Default: the activity queue named like the run's workflow queue. */
  taskQueue?: string;
  /** Lease of one attempt. Default 5 minutes. */
  startToCloseTimeout?: Duration;
  /** Limit on all attempts together. Default none. */
  scheduleToCloseTimeout?: Duration;
  /** Maximum time between heartbeats. Default none (heartbeats optional). */
  heartbeatTimeout?: Duration;
  /** Retry policy. Default: retry forever, 1s doubling up to 100s. */
  retry?: RetryOptions;
  /** Priority 0 to 100, higher runs sooner. Default: the run's priority. */
  priority?: number;
}

export interface WorkflowInfo {
  readonly runId: string;
  readonly instanceId: string;
  readonly workflowName: string;
  readonly taskQueue: string;
  /** Attempt of the current workflow task (1 for the first). */
  readonly attempt: number;
}

/** What workflow code may use. Everything here is deterministic on replay. */
export interface WorkflowContext {
  readonly info: WorkflowInfo;
  /** Typed activity functions, e.g. `ctx.activities<typeof acts>({ startToCloseTimeout: "1m" }).charge(order)`. */
  activities<A extends Record<string, Activity>>(options?: ActivityOptions): ActivityProxy<A>;
  /** Schedules an activity by name and resolves with its result; rejects with ActivityFailure. */
  executeActivity<O = unknown>(name: string, input?: unknown, options?: ActivityOptions): Promise<O>;
  /** The workflow clock: the time of the current workflow task, the same on every replay. */
  now(): Date;
  /** A number in [0, 1) from a generator seeded with the run id. */
  random(): number;
  /** A random (v4-format) UUID from the same seeded generator. */
  uuid(): string;
  /** True while the code re-executes recorded history. */
  readonly isReplaying: boolean;
  /** A logger that stays silent while replaying. */
  readonly log: Logger;
}

export interface ActivityInfo {
  readonly runId: string;
  readonly instanceId: string;
  readonly workflowName: string;
  readonly activityName: string;
  readonly seq: number;
  readonly attempt: number;
  readonly taskQueue: string;
  readonly scheduleTime: Date;
}

/** What activity code gets besides its input. */
export interface ActivityContext {
  readonly info: ActivityInfo;
  /** Aborts when cancellation is requested, the lease is lost, or the start-to-close timeout passes. */
  readonly signal: AbortSignal;
  /** Records progress and extends the lease; throttled and sent in the background. */
  heartbeat(details?: unknown): void;
  /** Details of the last heartbeat of the previous attempt, to resume from. */
  readonly heartbeatDetails: unknown;
  readonly log: Logger;
}

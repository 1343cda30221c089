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

/** Options of `ctx.waitForEvent`. */
export interface EventWaitOptions {
  /** Give up after this long with an EventWaitTimeoutError. Default: wait forever. */
  timeout?: Duration;
}

/** Options of `ctx.child`. */
export interface ChildOptions {
  /** Instance id of the child run. Required; at most one open run per instance id. */
  instanceId: string;
  /** Workflow task queue of the child. Default: the parent's. */
  taskQueue?: string;
  /** Labels of the child. Default: the parent's. */
  labels?: Record<string, string>;
  /** Priority 0 to 100. Default: the parent's. */
  priority?: number;
  /**
   * What happens to the child when the parent is cancelled or ends first. "cancel" (the default): the
   * child is asked to cancel. "abandon": the child keeps running; a cancelled parent stops waiting for it.
   */
  parentClosePolicy?: "cancel" | "abandon";
  /**
   * How long the child's run may stay open; when it passes, the child ends TIMED_OUT and `ctx.child`
   * rejects with a ChildWorkflowFailure of status "TIMED_OUT". Not inherited from the parent.
   * Default: no limit.
   */
  runTimeout?: Duration;
  /** The lease of each of the child's workflow tasks, 1 s to 10 min. Default 10 s (not the parent's). */
  workflowTaskTimeout?: Duration;
}

/** Options of `ctx.continueAsNew`. */
export interface ContinueAsNewOptions {
  /** Workflow of the new run (a registered name or the function). Default: the same workflow. */
  workflow?: string | Workflow;
  /** Workflow task queue of the new run. Default: the same queue. */
  taskQueue?: string;
}

/** Options of `ctx.condition`. */
export interface ConditionOptions {
  /**
   * Stop waiting after this long (a durable timer) and resolve `false`. Default: wait forever.
   * At most 10 years; 0 gives up at the next workflow task unless the predicate holds by then.
   */
  timeout?: Duration;
}

/**
 * A part of a workflow that workflow code can cancel, e.g. the loser of a race. Every await
 * (activity, timer, event wait, child, condition) belongs to the scope it was started in.
 */
export interface CancellationScope {
  /** Runs `fn` in this scope: awaits it starts (also after its own awaits) belong to the scope. */
  run<T>(fn: (scope: CancellationScope) => Promise<T>): Promise<T>;
  /**
   * Cancels the scope and its child scopes (not the `nonCancellable` parts inside them): their
   * pending awaits reject with CancelledFailure at once, and the cancel commands for their
   * activities, timers and children go out with the current workflow task. Awaits started in the
   * scope afterwards reject at once. Calling it again does nothing more.
   */
  cancel(reason?: string): void;
  /** True once this scope or one above it, the run included, was cancelled (with no `nonCancellable` between). */
  readonly cancelled: boolean;
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

  /** A durable timer: resolves once `duration` has passed on the server's clock (never earlier). */
  sleep(duration: Duration): Promise<void>;
  /** A durable timer that fires at `time`. */
  sleepUntil(time: Date): Promise<void>;
  /**
   * Takes the next external event named `eventName` that the code has not consumed and resolves with
   * its payload: one the run received earlier (buffered, oldest first) at once, else the next to
   * arrive. Each event is consumed once, by the oldest pending wait, else the name's `onEvent`
   * handler, else it is buffered. With `timeout`, rejects with EventWaitTimeoutError when it passes
   * first. A sender that gives only an event id (the form before names existed) sends the name too:
   * the id. Unlike before, a second wait for a name takes a second event, not the first one again.
   */
  waitForEvent<T = unknown>(eventName: string, options?: EventWaitOptions): Promise<T>;
  // Named events (decision 0022).
  /**
   * The events named `eventName` as a stream, in the order the server accepted them:
   * `for await (const item of ctx.events<Item>("add-item")) { ... }`. Each step takes the next
   * unconsumed event as `waitForEvent` does, so events that arrive while the loop body runs are
   * buffered, not lost. The stream never ends by itself: `break` (or return) when done.
   */
  events<T = unknown>(eventName: string): AsyncIterable<T>;
  /**
   * Calls `handler` for each event named `eventName` no wait takes (like Temporal's signal
   * handlers): first for those buffered before the call, in order, then as they arrive. One
   * handler per name (a second call replaces it); returns a function that removes it. An error a
   * handler throws (or rejects with) is treated as one escaping workflow code (a bug fails the
   * workflow task, an ApplicationFailure fails the run).
   */
  onEvent<T = unknown>(eventName: string, handler: (payload: T, event: { readonly name: string; readonly id: string }) => void | Promise<void>): () => void;
  /**
   * Starts a child workflow run and resolves with its result. Rejects with ChildWorkflowFailure when
   * the child fails, is cancelled or terminated, and with ChildWorkflowStartFailure when its instance
   * id already has an open run.
   */
  child<W extends Workflow>(workflow: W | string, input: WorkflowInput<W>, options: ChildOptions): Promise<WorkflowOutput<W>>;
  /**
   * Runs `fn` so that cancellation of the run does not interrupt it: activities, timers and children
   * started inside keep running and resolve normally. Use it for cleanup after a CancelledFailure.
   * It also shields `fn` from the cancellation of any scope it runs in (see `cancellable`).
   */
  nonCancellable<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Runs `fn` in a new cancellation scope, a child of the current one, and resolves with its result.
   * `fn` receives the scope; `scope.cancel()` (from inside or from code holding the scope) rejects
   * the scope's pending awaits with CancelledFailure and cancels their work mid-run. Cancelling the
   * run, or an enclosing scope, cancels it too.
   */
  cancellable<T>(fn: (scope: CancellationScope) => Promise<T>): Promise<T>;
  /** A new cancellation scope, a child of the current one; start work in it with `scope.run(fn)`. */
  newCancellationScope(): CancellationScope;
  /**
   * Waits until `predicate` over workflow state holds: resolves `true` at once if it already does,
   * else when it holds after the code ran in a later task (it is checked each time the code settles).
   * With `timeout`, resolves `false` when the timeout passes first (a durable timer, cancelled when the
   * predicate wins). The predicate must be synchronous and free of side effects; if it throws, the
   * condition rejects with that error. Cancellable like any await (CancelledFailure).
   */
  condition(predicate: () => boolean, options?: ConditionOptions): Promise<boolean>;
  /** True once cancellation of the run was requested. */
  readonly cancellationRequested: boolean;
  /**
   * Ends this run and starts a new run of the same instance id with `input`. Never resolves. The
   * external events received and not consumed go to the new run first, in the order received.
   */
  continueAsNew<I>(input: I, options?: ContinueAsNewOptions): Promise<never>;
  /** Runs `fn` once and records its (JSON) value; replay returns the recorded value without calling `fn`. */
  sideEffect<T>(fn: () => T): Promise<T>;
  /** Sets the run's custom status, shown by describe and list; "" clears it. */
  setStatus(text: string): void;
  /** Adds or replaces labels on the run. */
  upsertLabels(labels: Record<string, string>): void;
  /**
   * Makes a change to deployed workflow code safe for runs already in flight: `if (ctx.patched("id"))
   * { new code } else { old code }`. True on a first execution (a marker is recorded in history) and on
   * replay of a history that records the marker; false on replay of a history written before the patch
   * existed, so those runs keep the old path. The first answer holds for the rest of the run. `patchId`:
   * 1 to 128 letters, digits, '-', '_', '.' or ':' (a TypeError or RangeError otherwise). Once no run on
   * the old path is open, replace the call with `deprecatePatch`; see the SDK README, "Changing a deployed
   * workflow".
   */
  patched(patchId: string): boolean;
  /**
   * Step two of retiring a patch: the code keeps only the new path and calls this where `patched` was.
   * It records the marker too (so code that still uses `patched(patchId)` can replay runs it starts),
   * and replays histories with or without the marker. Deploy it only once every run that took the old
   * path has ended; then, once no run started before it is open, remove the call.
   */
  deprecatePatch(patchId: string): void;
  // Updates (workflow/updates.ts, decision 0024).
  /**
   * Handles updates named `name` (client: `handle.update(name, args)`): `fn` runs as workflow code
   * (it may call activities, sleep, change state) and its return value, or the error it throws on
   * purpose (ApplicationFailure, or a type in failWorkflowOn), is the caller's answer. `validator`
   * runs first, synchronously, against the current state: throwing rejects the update, which is then
   * never recorded. A request for a name with no handler is rejected, naming the handlers there are.
   * Register handlers at the start of the workflow: a request in the run's first task is validated
   * after the code first blocks. `undefined` removes the handler.
   */
  setUpdateHandler<A = unknown, R = unknown>(name: string, fn: UpdateHandler<A, R> | undefined, options?: UpdateHandlerOptions<A>): void;
  /**
   * Resolves once no update handler is running (at once if none is): await it before returning or
   * continuing as new, so accepted updates get their answers. Built on `condition`.
   */
  allHandlersFinished(): Promise<void>;
  /**
   * Registers (or, with `undefined`, removes) the handler of query `name`: `handle.query(name, args)`
   * and `dex workflow query RUN NAME` call it with the args and answer with its return value (JSON),
   * read from the run's state after its last completed workflow task; nothing is written to history.
   * The handler must be synchronous and must only read: calling activities, timers, events, children,
   * ctx.condition, ctx.sideEffect, ctx.setStatus, ctx.random or continue-as-new inside it throws, and
   * the query fails with that message. Register handlers at the start of the workflow (before its
   * first await), so a replay has them too. Names: 1 to 255 characters; "__dex_" is reserved
   * (`__dex_pending`, built in, answers where the workflow is waiting).
   */
  setQueryHandler<A = never, R = unknown>(name: string, handler: ((args: A) => R) | undefined): void;
}

/** An update handler: the update's argument in, its answer out. */
export type UpdateHandler<A = unknown, R = unknown> = (args: A) => R | Promise<R>;

/** Options of ctx.setUpdateHandler. */
export interface UpdateHandlerOptions<A = unknown> {
  /** Throws to reject the update before anything is recorded; must be synchronous and change nothing. Default: accept every request. */
  validator?: (args: A) => void;
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

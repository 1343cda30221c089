/**
 * Worker interceptors: hooks around each workflow task, each activity attempt and each
 * completion report, so tracing (the @dex/opentelemetry package) or other instrumentation can
 * wrap them without the SDK depending on it. Each hook gets what it needs to name and link its
 * work (the task's run, queue, attempt and the run's W3C trace context) and must call `next`
 * exactly once and return (or throw) what it does.
 */

/** One workflow task as the worker processes it. */
export interface WorkflowTaskInfo {
  readonly runId: string;
  readonly instanceId: string;
  readonly workflowName: string;
  readonly taskQueue: string;
  readonly attempt: number;
  /** The run's W3C trace context (`traceparent`, `tracestate`) from the task; empty when none. */
  readonly traceContext: Readonly<Record<string, string>>;
}

/** One activity attempt as the worker runs it. */
export interface ActivityAttemptInfo {
  readonly runId: string;
  readonly instanceId: string;
  readonly workflowName: string;
  readonly activityName: string;
  readonly seq: number;
  readonly taskQueue: string;
  readonly attempt: number;
  /** The calling run's W3C trace context from the task; empty when none. */
  readonly traceContext: Readonly<Record<string, string>>;
}

/**
 * A completion report: CompleteWorkflowTask / FailWorkflowTask, or an activity's result or
 * failure. `task` is the same object the task's or attempt's hook got, so a hook can find
 * what it made for it (its span, say).
 */
export type CompletionInfo =
  | { readonly kind: "workflowTask"; readonly outcome: "completed" | "failed"; readonly task: WorkflowTaskInfo }
  | { readonly kind: "activityAttempt"; readonly outcome: "completed" | "failed"; readonly task: ActivityAttemptInfo };

export interface WorkerInterceptor {
  /** Wraps the processing of one workflow task, from replay to its completion report. */
  workflowTask?(info: WorkflowTaskInfo, next: () => Promise<void>): Promise<void>;
  /** Wraps one activity attempt, from the activity's call to its report. */
  activityAttempt?(info: ActivityAttemptInfo, next: () => Promise<void>): Promise<void>;
  /**
   * Wraps the sending of one completion report (with its retries); throws what the report threw.
   * `next` may be given headers for the report (merged with what outer hooks gave): tracing passes
   * its span's `traceparent`/`tracestate`, sent as the call's metadata, or in a batch as the item's
   * `trace_context` (docs/worker-protocol.md, "Trace context"). Nothing is sent when no hook gives any.
   */
  completion?(info: CompletionInfo, next: (headers?: Record<string, string>) => Promise<void>): Promise<void>;
}

type Hook<I> = (info: I, next: () => Promise<void>) => Promise<void>;

/** Runs `fn` inside the hooks the interceptors have for it; the first interceptor is the outermost. */
export function intercept<I>(hooks: ReadonlyArray<Hook<I> | undefined>, info: I, fn: () => Promise<void>): Promise<void> {
  let next = fn;
  for (let i = hooks.length - 1; i >= 0; i--) {
    const hook = hooks[i];
    if (!hook) continue;
    const inner = next;
    next = () => hook(info, inner);
  }
  return next();
}

/** The headers a completion report carries: what its hooks gave, undefined when none (the common case). */
export type ReportHeaders = Record<string, string> | undefined;

/**
 * Sends a completion report through the completion hooks; `send` gets the headers the hooks gave
 * (each hook's added to its outer hooks'), or undefined when there are no hooks or none gave any.
 */
export function interceptCompletion(hooks: ReadonlyArray<CompletionHook>, info: CompletionInfo, send: (headers: ReportHeaders) => Promise<void>): Promise<void> {
  if (hooks.length === 0) return send(undefined);
  let next = (headers: ReportHeaders): Promise<void> => send(headers && Object.keys(headers).length > 0 ? headers : undefined);
  for (let i = hooks.length - 1; i >= 0; i--) {
    const hook = hooks[i]!;
    const inner = next;
    next = (headers) => hook(info, (more) => inner(more ? { ...headers, ...more } : headers));
  }
  return next(undefined);
}

type CompletionHook = NonNullable<WorkerInterceptor["completion"]>;

/** The hooks of one kind, bound to their interceptors; an empty list when there are none (the common case). */
export function hooksOf<K extends keyof WorkerInterceptor>(interceptors: readonly WorkerInterceptor[] | undefined, kind: K): Array<NonNullable<WorkerInterceptor[K]>> {
  const hooks: Array<NonNullable<WorkerInterceptor[K]>> = [];
  for (const interceptor of interceptors ?? []) {
    const hook = interceptor[kind];
    if (hook) hooks.push(hook.bind(interceptor) as NonNullable<WorkerInterceptor[K]>);
  }
  return hooks;
}

/** The worker's interceptors, sorted by hook once at creation. */
export interface WorkerHooks {
  workflowTask: Array<Hook<WorkflowTaskInfo>>;
  activityAttempt: Array<Hook<ActivityAttemptInfo>>;
  completion: CompletionHook[];
}

export function workerHooks(interceptors: readonly WorkerInterceptor[] | undefined): WorkerHooks {
  return {
    workflowTask: hooksOf(interceptors, "workflowTask"),
    activityAttempt: hooksOf(interceptors, "activityAttempt"),
    completion: hooksOf(interceptors, "completion"),
  };
}

/**
 * @dex/opentelemetry: OpenTelemetry traces for dex clients and workers, through the SDK's
 * interceptors (the SDK itself stays gRPC + protobuf only).
 *
 * One trace per run: the client's start span sends its W3C trace context with the start; the
 * server stores it with the run and hands it to every task of the run (and of its children and
 * continuations), so each workflow task span and activity attempt span, on any worker, is a
 * child of the start span; each completion report is a child span of its task or attempt, and
 * sends its own context with the report, so the server's span of that call is its child (a
 * ReportActivityTasks batch's span is linked to each of its reports instead).
 *
 * Spans go to the tracer you pass, else to the global tracer provider's "@dex/opentelemetry"
 * tracer: register a provider (the OpenTelemetry Node SDK, configured by the OTEL_* variables)
 * before creating the client and workers. Without one, OpenTelemetry's API does nothing.
 */
import { context, isSpanContextValid, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from "@opentelemetry/api";
import type {
  ActivityAttemptInfo,
  ClientInterceptor,
  CompletionInfo,
  WorkerInterceptor,
  WorkflowTaskInfo,
} from "@dex/sdk";
import { contextFromHeaders, traceHeaders } from "./w3c.js";

export { contextFromHeaders, traceHeaders } from "./w3c.js";

/** Span attribute names (dex.*), the same on the server's RPC spans. */
export const Attribute = {
  RUN_ID: "dex.run_id",
  INSTANCE_ID: "dex.instance_id",
  WORKFLOW: "dex.workflow",
  TASK_QUEUE: "dex.task_queue",
  ATTEMPT: "dex.attempt",
  ACTIVITY: "dex.activity",
  ACTIVITY_SEQ: "dex.activity_seq",
  STARTED: "dex.started",
} as const;

export interface TracingOptions {
  /** Default: the global tracer provider's tracer named "@dex/opentelemetry". */
  tracer?: Tracer;
}

function tracerOf(options: TracingOptions): Tracer {
  return options.tracer ?? trace.getTracer("@dex/opentelemetry");
}

/** Runs `fn` in `span` (active, so spans made inside are its children), ending it with `fn`'s outcome. */
async function inSpan<T>(span: Span, fn: () => Promise<T>): Promise<T> {
  try {
    return await context.with(trace.setSpan(context.active(), span), fn);
  } catch (err) {
    span.recordException(err instanceof Error ? err : String(err));
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}

/** For createClient({ interceptors }): a span per start, whose trace context the run keeps. */
export function tracingClientInterceptor(options: TracingOptions = {}): ClientInterceptor {
  const tracer = tracerOf(options);
  return {
    async start(info, next) {
      const name = info.kind === "start" ? "StartWorkflow" : "SendEventWithStart";
      const span = tracer.startSpan(`${name}:${info.workflowName}`, {
        kind: SpanKind.CLIENT,
        attributes: { [Attribute.WORKFLOW]: info.workflowName, [Attribute.INSTANCE_ID]: info.instanceId, [Attribute.TASK_QUEUE]: info.taskQueue },
      });
      return inSpan(span, async () => {
        const result = await next(headersOf(span));
        span.setAttributes({ [Attribute.RUN_ID]: result.runId, [Attribute.STARTED]: result.started });
        return result;
      });
    },
  };
}

/**
 * For createWorkflowWorker / createActivityWorker({ interceptors }): a span per workflow task
 * ("WorkflowTask:<workflow>") and per activity attempt ("RunActivity:<activity>"), children of
 * the run's trace context, and one per completion report (e.g. "CompleteWorkflowTask").
 */
export function tracingWorkerInterceptor(options: TracingOptions = {}): WorkerInterceptor {
  const tracer = tracerOf(options);
  const spans = new WeakMap<WorkflowTaskInfo | ActivityAttemptInfo, Span>();
  const run = (info: WorkflowTaskInfo | ActivityAttemptInfo, name: string, attributes: Attributes, next: () => Promise<void>) => {
    const span = tracer.startSpan(name, { kind: SpanKind.CONSUMER, attributes }, contextFromHeaders(info.traceContext));
    spans.set(info, span);
    return inSpan(span, next);
  };
  return {
    workflowTask(info, next) {
      return run(info, `WorkflowTask:${info.workflowName}`, common(info), next);
    },
    activityAttempt(info, next) {
      const attributes = { ...common(info), [Attribute.ACTIVITY]: info.activityName, [Attribute.ACTIVITY_SEQ]: info.seq };
      return run(info, `RunActivity:${info.activityName}`, attributes, next);
    },
    completion(info, next) {
      const parent = spans.get(info.task);
      if (parent && info.outcome === "failed") parent.setStatus({ code: SpanStatusCode.ERROR, message: `${info.kind} failed` });
      const parentContext = parent ? trace.setSpan(context.active(), parent) : context.active();
      const span = tracer.startSpan(completionName(info), { kind: SpanKind.CLIENT, attributes: common(info.task) }, parentContext);
      // The report carries the span's context: the server's span of the call is its child (or, in
      // a ReportActivityTasks batch of many runs, is linked to it).
      return inSpan(span, () => next(headersOf(span)));
    },
  };
}

/**
 * The span's W3C headers to send, or none for a span that records nothing and has no parent (the
 * global no-op tracer when the application registered no provider): tracing off sends nothing.
 */
function headersOf(span: Span): Record<string, string> {
  const spanContext = span.spanContext();
  return isSpanContextValid(spanContext) ? traceHeaders(spanContext) : {};
}

function common(info: WorkflowTaskInfo | ActivityAttemptInfo): Attributes {
  return {
    [Attribute.RUN_ID]: info.runId,
    [Attribute.INSTANCE_ID]: info.instanceId,
    [Attribute.WORKFLOW]: info.workflowName,
    [Attribute.TASK_QUEUE]: info.taskQueue,
    [Attribute.ATTEMPT]: info.attempt,
  };
}

function completionName(info: CompletionInfo): string {
  const verb = info.outcome === "completed" ? "Complete" : "Fail";
  return info.kind === "workflowTask" ? `${verb}WorkflowTask` : `${verb}ActivityTask`;
}

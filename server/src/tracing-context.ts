/** The trace contexts a server span joins: its call's `traceparent` metadata, and a batch's per-item contexts. */
import { ROOT_CONTEXT, createTraceState, trace, type Context, type Link, type SpanContext } from "@opentelemetry/api";
import type * as grpc from "@grpc/grpc-js";
import type { ReportActivityTasksRequest } from "@dex/proto";
import { traceContextOf, validTraceContext } from "./api/trace-context.js";

/** The parent context of a server span; ROOT_CONTEXT when the call carries no valid `traceparent`. */
export function contextOfMetadata(metadata: grpc.Metadata): Context {
  const spanContext = remoteSpanContext(traceContextOf(metadata));
  return spanContext ? trace.setSpanContext(ROOT_CONTEXT, spanContext) : ROOT_CONTEXT;
}

/**
 * One link per item of a ReportActivityTasks call that carries a valid trace context (the worker's
 * span for that report, in its run's trace). A batch holds outcomes of many runs, so its span
 * cannot be a child of each; links are how OpenTelemetry joins one span to several traces.
 * `dex.report_item` is the item's index, so a link can be matched with its answer.
 */
export function linksOfReports(request: unknown): Link[] {
  const items = (request as ReportActivityTasksRequest | undefined)?.items ?? [];
  const links: Link[] = [];
  items.forEach((item, index) => {
    const headers = item.traceContext;
    const spanContext = remoteSpanContext(validTraceContext(headers["traceparent"], headers["tracestate"]));
    if (spanContext) links.push({ context: spanContext, attributes: { "dex.report_item": index } });
  });
  return links;
}

/** A remote span context from headers already checked by validTraceContext; undefined for none. */
function remoteSpanContext(headers: Record<string, string> | null): SpanContext | undefined {
  if (!headers) return undefined;
  const [, traceId, spanId, flags] = headers["traceparent"]!.split("-");
  const state = headers["tracestate"];
  return {
    traceId: traceId!,
    spanId: spanId!,
    traceFlags: parseInt(flags!, 16) & 0x01,
    isRemote: true,
    ...(state ? { traceState: createTraceState(state) } : {}),
  };
}

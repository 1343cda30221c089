/**
 * The W3C Trace Context headers (https://www.w3.org/TR/trace-context/) written and read here
 * rather than through the global propagator: dex's trace context is W3C by protocol
 * (docs/worker-protocol.md), whatever propagator an application registered, so a client and a
 * worker in different languages or processes always agree.
 */
import { createTraceState, ROOT_CONTEXT, trace, type Context, type SpanContext } from "@opentelemetry/api";

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** The `traceparent` (and `tracestate`) headers of a span. */
export function traceHeaders(spanContext: SpanContext): Record<string, string> {
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, "0");
  const headers: Record<string, string> = { traceparent: `00-${spanContext.traceId}-${spanContext.spanId}-${flags}` };
  const state = spanContext.traceState?.serialize();
  if (state) headers["tracestate"] = state;
  return headers;
}

/** A context whose parent is the remote span the headers name; ROOT_CONTEXT when they name none (or an invalid one). */
export function contextFromHeaders(headers: Readonly<Record<string, string>>): Context {
  const match = TRACEPARENT.exec(headers["traceparent"]?.trim().toLowerCase() ?? "");
  if (!match || match[1] === "ff" || /^0+$/.test(match[2]!) || /^0+$/.test(match[3]!)) return ROOT_CONTEXT;
  const state = headers["tracestate"];
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: match[2]!,
    spanId: match[3]!,
    traceFlags: parseInt(match[4]!, 16) & 0x01,
    isRemote: true,
    ...(state ? { traceState: createTraceState(state) } : {}),
  });
}

/**
 * The W3C trace context a start request carries in its metadata (docs/worker-protocol.md,
 * "Trace context"): stored with the run and handed to the worker with each of its tasks.
 * The server only copies it; it never needs OpenTelemetry for that, so any client that sends
 * a `traceparent` header (any language) has its trace joined by the workers' spans.
 */
import type * as grpc from "@grpc/grpc-js";

/** version-traceid-spanid-flags, lowercase hex; an all-zero trace or span id is invalid. */
const TRACEPARENT = /^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;
/** The W3C limit is 32 list members; 512 characters keeps the run row small and is what propagators send in practice. */
export const MAX_TRACESTATE_LENGTH = 512;

/**
 * The request's `traceparent` (and `tracestate`), or null when it has no valid traceparent.
 * Invalid trace context is ignored rather than refused, as the W3C spec asks of every
 * receiver: tracing must never make a start fail.
 */
export function traceContextOf(metadata: grpc.Metadata): Record<string, string> | null {
  return validTraceContext(firstString(metadata, "traceparent"), firstString(metadata, "tracestate"));
}

/**
 * The same check for headers carried elsewhere than in metadata (ActivityTaskReport.trace_context,
 * one per outcome of a batch): the valid `traceparent` and a `tracestate` within the limit, or null.
 */
export function validTraceContext(traceparent: string | undefined, tracestate: string | undefined): Record<string, string> | null {
  const parent = traceparent?.trim().toLowerCase();
  if (!parent || !TRACEPARENT.test(parent) || parent.startsWith("ff")) return null;
  const context: Record<string, string> = { traceparent: parent };
  const state = tracestate?.trim();
  if (state && state.length <= MAX_TRACESTATE_LENGTH) context["tracestate"] = state;
  return context;
}

function firstString(metadata: grpc.Metadata, key: string): string | undefined {
  const [value] = metadata.get(key);
  return typeof value === "string" ? value : undefined;
}

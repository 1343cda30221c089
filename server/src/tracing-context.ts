/** The parent context of a server span: the W3C trace context a call's metadata carries. */
import { ROOT_CONTEXT, createTraceState, trace, type Context } from "@opentelemetry/api";
import type * as grpc from "@grpc/grpc-js";
import { traceContextOf } from "./api/trace-context.js";

/** ROOT_CONTEXT when the call carries no valid `traceparent`. */
export function contextOfMetadata(metadata: grpc.Metadata): Context {
  const headers = traceContextOf(metadata);
  if (!headers) return ROOT_CONTEXT;
  const [, traceId, spanId, flags] = headers["traceparent"]!.split("-");
  const state = headers["tracestate"];
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: traceId!,
    spanId: spanId!,
    traceFlags: parseInt(flags!, 16) & 0x01,
    isRemote: true,
    ...(state ? { traceState: createTraceState(state) } : {}),
  });
}

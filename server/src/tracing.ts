/**
 * OpenTelemetry traces of the server (docs/decisions/0030-opentelemetry-traces.md): a SERVER span
 * per gRPC call, a child of the caller's W3C `traceparent` metadata when it sends one (a client
 * start traced by @dex/opentelemetry or by any language's OpenTelemetry gRPC instrumentation).
 *
 * Off unless configured with the standard OTEL_* variables, read once by `dex server`/`dex dev`
 * (tracing-setup.ts) and passed down as ServerOptions.tracer. Off, no hook is installed:
 * the call path keeps one `undefined` check. The run's trace context itself is stored and handed
 * to workers whether or not the server traces (api/trace-context.ts): that costs nothing extra.
 */
import { SpanKind, SpanStatusCode, type Tracer } from "@opentelemetry/api";
import type * as grpc from "@grpc/grpc-js";
import { contextOfMetadata } from "./tracing-context.js";

/** grpcService's onCall hook: a SERVER span per call, ended with its status code. */
export function rpcSpans(tracer: Tracer) {
  return (call: { service: string; method: string; metadata: grpc.Metadata }) => {
    const span = tracer.startSpan(
      `${call.service}/${call.method}`,
      {
        kind: SpanKind.SERVER,
        attributes: { "rpc.system": "grpc", "rpc.service": call.service, "rpc.method": call.method },
      },
      contextOfMetadata(call.metadata),
    );
    return (code: string) => {
      span.setAttribute("rpc.grpc.status_code", code);
      if (code !== "OK") span.setStatus({ code: SpanStatusCode.ERROR, message: code });
      span.end();
    };
  };
}

/**
 * OpenTelemetry traces of the server (docs/decisions/0030-opentelemetry-traces.md): a SERVER span
 * per gRPC call, a child of the caller's W3C `traceparent` metadata when it sends one (a client
 * start traced by @dex/opentelemetry or by any language's OpenTelemetry gRPC instrumentation, a
 * worker's completion report traced by @dex/opentelemetry). A ReportActivityTasks span is linked to
 * the trace context of each of its items instead (tracing-context.ts).
 *
 * Off unless configured with the standard OTEL_* variables, read once by `dex server`/`dex dev`
 * (tracing-setup.ts) and passed down as ServerOptions.tracer. Off, no hook is installed:
 * the call path keeps one `undefined` check. The run's trace context itself is stored and handed
 * to workers whether or not the server traces (api/trace-context.ts): that costs nothing extra.
 */
import { SpanKind, SpanStatusCode, type Link, type Tracer } from "@opentelemetry/api";
import type * as grpc from "@grpc/grpc-js";
import { contextOfMetadata, linksOfReports } from "./tracing-context.js";

/**
 * Calls that carry outcomes of several runs, each with its own trace context: their span is linked
 * to every one (a span has one parent). Read from the request the call decoded anyway: no extra
 * statement, and only when the server traces.
 */
const batchLinks: Readonly<Record<string, (request: unknown) => Link[]>> = {
  "dex.v1.WorkerService/ReportActivityTasks": linksOfReports,
};

/** grpcService's onCall hook: a SERVER span per call, ended with its status code. */
export function rpcSpans(tracer: Tracer) {
  return (call: { service: string; method: string; metadata: grpc.Metadata; request: unknown }) => {
    const name = `${call.service}/${call.method}`;
    const links = batchLinks[name]?.(call.request);
    const span = tracer.startSpan(
      name,
      {
        kind: SpanKind.SERVER,
        attributes: { "rpc.system": "grpc", "rpc.service": call.service, "rpc.method": call.method },
        ...(links?.length ? { links } : {}),
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

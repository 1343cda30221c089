/**
 * The server's OpenTelemetry SDK, set up from the standard OTEL_* variables (decision 0030).
 * Kept apart from tracing.ts so that a server without tracing never loads the SDK or exporter.
 */
import type { Tracer } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";

export interface ServerTracing {
  readonly tracer: Tracer;
  /** Sends the spans still buffered and stops the exporter. */
  shutdown(): Promise<void>;
}

/**
 * Tracing as the OTEL_* variables ask, or undefined when they do not turn it on: on when
 * OTEL_TRACES_EXPORTER is "otlp" or an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; off when OTEL_SDK_DISABLED=true or
 * OTEL_TRACES_EXPORTER=none. The exporter is OTLP over HTTP (protobuf), which reads its endpoint,
 * headers and timeout from the same variables; OTEL_SERVICE_NAME names the service (default dex-server).
 */
export function tracingFromEnvironment(env: NodeJS.ProcessEnv): ServerTracing | undefined {
  if (env["OTEL_SDK_DISABLED"]?.trim().toLowerCase() === "true") return undefined;
  const exporters = (env["OTEL_TRACES_EXPORTER"] ?? "").split(",").map((e) => e.trim().toLowerCase()).filter(Boolean);
  if (exporters.includes("none")) return undefined;
  const endpoint = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] || env["OTEL_EXPORTER_OTLP_ENDPOINT"];
  if (!exporters.includes("otlp") && !endpoint) return undefined;
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": env["OTEL_SERVICE_NAME"] || "dex-server" }),
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter() })],
  });
  return { tracer: provider.getTracer("@dex/server"), shutdown: () => provider.shutdown() };
}

/**
 * What a worker's completion reports carry on the wire (decision 0030), seen through a recording
 * gRPC proxy between real workers and a real server: a traced worker sends its report span's
 * traceparent (metadata of the unary calls, `trace_context` of each ReportActivityTasks item); a
 * worker that does not trace sends nothing, whether it has no interceptors (the SDK's default) or
 * has the tracing interceptor with no tracer provider registered (OpenTelemetry's no-op tracer).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { ProxyTracerProvider } from "@opentelemetry/api";
import { ReportActivityTasksRequestSchema } from "@dex/proto";
import { createClient, type Client, type WorkflowContext } from "@dex/sdk";
import { tracingClientInterceptor, tracingWorkerInterceptor } from "../src/index.js";
import { activities, startTracedServer, type TracedServer } from "./traced-server.js";
import { startWireRecorder, type RecordedCall, type WireRecorder } from "./wire-recorder.js";


async function wiredWorkflow(ctx: WorkflowContext, name: string) {
  const acts = ctx.activities<typeof activities>({ retry: { initialInterval: "10ms" } });
  return { greeting: await acts.greet(name), attempts: await acts.flaky(undefined) };
}

const REPORTS = ["CompleteWorkflowTask", "FailWorkflowTask", "CompleteActivityTask", "FailActivityTask", "ReportActivityTasks"].map((m) => `WorkerService/${m}`);
const TRACE_KEYS = ["traceparent", "tracestate"];

/** What each completion report of `calls` carried: its trace metadata, and each batch item's trace_context. */
function traceOf(calls: RecordedCall[]) {
  return calls
    .filter((c) => REPORTS.includes(c.method))
    .map((c) => ({
      method: c.method,
      metadata: Object.fromEntries(TRACE_KEYS.flatMap((k) => c.metadata.get(k).map((v) => [k, String(v)]))),
      items: c.method.endsWith("ReportActivityTasks") ? fromBinary(ReportActivityTasksRequestSchema, c.request).items.map((i) => ({ ...i.traceContext })) : [],
    }));
}

describe("completion reports on the wire", () => {
  let traced: TracedServer;
  let wire: WireRecorder;
  let tracingClient: Client;
  let plainClient: Client;

  beforeAll(async () => {
    traced = await startTracedServer({ queues: ["traced", "plain", "no-provider"] });
    wire = await startWireRecorder(traced.server.address);
    const address = wire.address;
    const workflows = { wiredWorkflow };
    traced.startWorkers({ workflows, activities, address, taskQueue: "traced" });
    traced.startWorkers({ workflows, activities, address, taskQueue: "plain", interceptors: [] });
    // No provider registered anywhere: the interceptor's spans are OpenTelemetry's no-op spans.
    const noProvider = new ProxyTracerProvider().getTracer("unregistered");
    traced.startWorkers({ workflows, activities, address, taskQueue: "no-provider", interceptors: [tracingWorkerInterceptor({ tracer: noProvider })] });
    tracingClient = createClient({ address: traced.server.address, interceptors: [tracingClientInterceptor({ tracer: traced.tracer })] });
    plainClient = createClient({ address: traced.server.address });
  });

  afterAll(async () => {
    tracingClient?.close();
    plainClient?.close();
    await traced?.close();
    await wire?.close();
  });

  /** Runs one run on `taskQueue` and returns the completion reports sent meanwhile (the other queues' workers only poll). */
  async function reportsOfRun(client: Client, taskQueue: string, instanceId: string) {
    const from = wire.calls.length;
    const handle = await client.start(wiredWorkflow, { instanceId, taskQueue, input: "wire" });
    expect(await handle.result()).toEqual({ greeting: "hello wire", attempts: 2 });
    const reports = traceOf(wire.calls.slice(from));
    // Three workflow task completions and three activity outcomes went through the proxy.
    expect(reports.filter((r) => r.method === "WorkerService/CompleteWorkflowTask")).toHaveLength(3);
    expect(reports.flatMap((r) => (r.method.endsWith("ReportActivityTasks") ? r.items : r.method.endsWith("ActivityTask") ? [r.metadata] : []))).toHaveLength(3);
    return reports;
  }

  it("sends the report span's traceparent from a traced worker", async () => {
    const reports = await reportsOfRun(tracingClient, "traced", "wire-traced");
    const traceparent = /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/;
    for (const report of reports) {
      if (report.method.endsWith("ReportActivityTasks")) {
        expect(report.metadata).toEqual({});
        for (const item of report.items) expect(item["traceparent"]).toMatch(traceparent);
      } else {
        expect(report.metadata["traceparent"]).toMatch(traceparent);
      }
    }
  });

  it("sends no trace context from a worker without interceptors", async () => {
    for (const report of await reportsOfRun(tracingClient, "plain", "wire-plain")) {
      expect(report).toEqual({ method: report.method, metadata: {}, items: report.items.map(() => ({})) });
    }
  });

  it("sends no trace context from a tracing interceptor whose tracer records nothing", async () => {
    for (const report of await reportsOfRun(plainClient, "no-provider", "wire-no-provider")) {
      expect(report).toEqual({ method: report.method, metadata: {}, items: report.items.map(() => ({})) });
    }
  });
});

/**
 * A second language's trace context is honoured (issue 16, done-when 2): a Python grpcio client,
 * written only from the .proto files and without any dex SDK, starts a run with a W3C
 * `traceparent` in its metadata; the server's span of that call and every span the TypeScript
 * workers make for the run carry the Python client's trace id, as children of its span.
 * Skipped, saying why, where python3-grpcio, protoc or grpc_python_plugin is missing.
 */
import { rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "@dex/testing";
import type { WorkflowContext } from "@dex/sdk";
// The repository's test support (not part of the package): the same Python tooling the e2e tests use.
import { generatePythonStubs, pythonSkipReason, runPython } from "../../tests/support/python.js";
import { Attribute } from "../src/index.js";
import { startTracedServer, type TracedServer } from "./traced-server.js";

const SCRIPT = fileURLToPath(new URL("../../tests/python/start_traced.py", import.meta.url));
const skipReason = pythonSkipReason("python-trace.test.ts");

const activities = {
  async greet(name: string) {
    return `hello, ${name}`;
  },
};
async function greeting(ctx: WorkflowContext, input: { name: string }) {
  return ctx.activities<typeof activities>().greet(input.name);
}

describe.skipIf(skipReason !== undefined)("a Python client's trace context", () => {
  let traced: TracedServer;
  let stubs: string;

  beforeAll(async () => {
    traced = await startTracedServer();
    traced.startWorkers({ workflows: { greeting }, activities });
    stubs = await generatePythonStubs();
  });

  afterAll(async () => {
    await traced?.close();
    if (stubs) await rm(stubs, { recursive: true, force: true });
  });

  it("puts the run's server and worker spans in the trace the Python client's traceparent names", async () => {
    const run = await runPython([SCRIPT, stubs, traced.server.address, "greeting", "py-traced-1", JSON.stringify({ name: "Ada" })]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as { run_id: string; status: string; trace_id: string; span_id: string };
    expect(out.status).toBe("RUN_STATUS_COMPLETED");

    // Two workflow tasks (start, after greet) and one attempt; each span ends after its report.
    const spans = await waitFor(() => {
      const forRun = traced.exporter.getFinishedSpans().filter((s) => s.attributes[Attribute.RUN_ID] === out.run_id);
      const tasks = forRun.filter((s) => s.name === "WorkflowTask:greeting");
      const attempts = forRun.filter((s) => s.name === "RunActivity:greet");
      return tasks.length === 2 && attempts.length === 1 ? [...tasks, ...attempts] : undefined;
    });
    for (const span of spans) {
      expect(span.spanContext().traceId).toBe(out.trace_id);
      expect(span.parentSpanContext?.spanId).toBe(out.span_id);
      expect(span.parentSpanContext?.traceState?.get("py")).toBe("1");
    }
    const serverStart = traced.exporter.getFinishedSpans().find((s) => s.name === "dex.v1.ClientService/StartWorkflow");
    expect(serverStart?.spanContext().traceId).toBe(out.trace_id);
    expect(serverStart?.parentSpanContext?.spanId).toBe(out.span_id);
  });
});

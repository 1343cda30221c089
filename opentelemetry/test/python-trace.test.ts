/**
 * A second language's trace context is honoured (issue 16, done-when 2): a Python grpcio client,
 * written only from the .proto files and without any dex SDK, starts a run with a W3C
 * `traceparent` in its metadata; the server's span of that call and every span the TypeScript
 * workers make for the run carry the Python client's trace id, as children of its span.
 * Skipped, saying why, where python3-grpcio, protoc or grpc_python_plugin is missing.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { protoRoot } from "@dex/proto";
import { waitFor } from "@dex/testing";
import type { WorkflowContext } from "@dex/sdk";
import { Attribute } from "../src/index.js";
import { startTracedServer, type TracedServer } from "./traced-server.js";

const PYTHON = "/usr/bin/python3";
const PLUGIN = "/usr/bin/grpc_python_plugin";
const SCRIPT = fileURLToPath(new URL("../../tests/python/start_traced.py", import.meta.url));

function missingTools(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  if (spawnSync(PYTHON, ["-c", "import grpc, google.protobuf"]).status !== 0) return "python3-grpcio is not installed";
  if (spawnSync("protoc", ["--version"]).status !== 0) return "protoc (protobuf-compiler) is not installed";
  if (!existsSync(PLUGIN)) return "grpc_python_plugin (protobuf-compiler-grpc) is not installed";
  return undefined;
}

const skipReason = missingTools();
if (skipReason) console.warn(`SKIPPED python-trace.test.ts: ${skipReason}; install python3-grpcio protobuf-compiler protobuf-compiler-grpc (.ci/run does)`);

function runPython(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, args, { timeout: 60_000 });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

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
    stubs = await mkdtemp(`${tmpdir()}/dex-python-trace-stubs-`);
    const protos = (await readdir(`${protoRoot}/dex/v1`)).filter((f) => f.endsWith(".proto")).map((f) => `dex/v1/${f}`);
    execFileSync("protoc", [`-I${protoRoot}`, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, `--plugin=protoc-gen-grpc_python=${PLUGIN}`, ...protos]);
    await writeFile(`${stubs}/dex/__init__.py`, "");
    await writeFile(`${stubs}/dex/v1/__init__.py`, "");
  });

  afterAll(async () => {
    await traced?.close();
    if (stubs) await rm(stubs, { recursive: true, force: true });
  });

  it("puts the run's server and worker spans in the trace the Python client's traceparent names", async () => {
    const run = await runPython([SCRIPT, stubs, traced.server.address, "greeting", "py-traced-1", JSON.stringify({ name: "Ada" })]);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
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

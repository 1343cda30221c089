/**
 * One run's trace, end to end against a real server, Postgres and workers: the client's start
 * span is the root; the server's StartWorkflow span, every workflow task span and every activity
 * attempt span (the eager first attempt and the polled retry) are its children, through the trace
 * context the server stored with the run; each completion report is a child of its task.
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ReadableSpan } from "@opentelemetry/sdk-trace";
import { waitFor } from "@dex/testing";
import { createClient, type Client, type WorkflowContext } from "@dex/sdk";
import { Attribute, tracingClientInterceptor } from "../src/index.js";
import { activities, startTracedServer, type TracedServer } from "./traced-server.js";


async function tracedWorkflow(ctx: WorkflowContext, name: string) {
  const acts = ctx.activities<typeof activities>({ retry: { initialInterval: "10ms" } });
  const greeting = await acts.greet(name);
  const attempts = await acts.flaky(undefined);
  return { greeting, attempts };
}

/** A parent whose child runs tracedWorkflow: the child joins the parent's trace. */
async function parentWorkflow(ctx: WorkflowContext) {
  return ctx.child(tracedWorkflow, "child", { instanceId: `${ctx.info.instanceId}-child` });
}

describe("one run's trace", () => {
  let traced: TracedServer;
  let client: Client;

  beforeAll(async () => {
    traced = await startTracedServer();
    traced.startWorkers({ workflows: { tracedWorkflow, parentWorkflow }, activities });
    client = createClient({ address: traced.server.address, interceptors: [tracingClientInterceptor({ tracer: traced.tracer })] });
  });

  afterAll(async () => {
    client?.close();
    await traced?.close();
  });

  it("joins the start, the server's RPCs, every workflow task, activity attempt and completion into one tree", async () => {
    const handle = await client.start(tracedWorkflow, { instanceId: "traced-1", input: "otel" });
    expect(await handle.result()).toEqual({ greeting: "hello otel", attempts: 2 });

    // Three workflow tasks (start, after greet, after flaky's retry), each ended after its completion report.
    const spans = await waitFor(
      () => {
        const all = traced.exporter.getFinishedSpans();
        const tasks = all.filter((s) => s.name === "WorkflowTask:tracedWorkflow");
        const completions = all.filter((s) => s.name === "CompleteWorkflowTask");
        return tasks.length === 3 && completions.length === 3 ? all : undefined;
      },
      { message: "three workflow task spans with their completions" },
    );
    const byName = (name: string) => spans.filter((s) => s.name === name);
    const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

    const [start] = byName("StartWorkflow:tracedWorkflow");
    expect(start).toBeDefined();
    const traceId = start!.spanContext().traceId;
    const startId = start!.spanContext().spanId;
    expect(parentOf(start!)).toBeUndefined();
    expect(start!.attributes).toMatchObject({ [Attribute.RUN_ID]: handle.runId, [Attribute.WORKFLOW]: "tracedWorkflow", [Attribute.STARTED]: true });

    // The server's span of the start call is the start span's child (traceparent metadata).
    const [serverStart] = byName("dex.v1.ClientService/StartWorkflow");
    expect(serverStart?.spanContext().traceId).toBe(traceId);
    expect(parentOf(serverStart!)).toBe(startId);
    expect(serverStart!.attributes["rpc.grpc.status_code"]).toBe("OK");

    const tasks = byName("WorkflowTask:tracedWorkflow");
    for (const task of tasks) {
      expect(task.spanContext().traceId).toBe(traceId);
      expect(parentOf(task)).toBe(startId);
      expect(task.attributes).toMatchObject({
        [Attribute.RUN_ID]: handle.runId,
        [Attribute.WORKFLOW]: "tracedWorkflow",
        [Attribute.TASK_QUEUE]: "default",
        [Attribute.ATTEMPT]: 1,
      });
    }
    const taskIds = new Set(tasks.map((t) => t.spanContext().spanId));
    for (const completion of byName("CompleteWorkflowTask")) {
      expect(completion.spanContext().traceId).toBe(traceId);
      expect(taskIds.has(parentOf(completion)!)).toBe(true);
    }

    const greet = byName("RunActivity:greet");
    const flaky = byName("RunActivity:flaky");
    expect(greet).toHaveLength(1);
    expect(flaky.map((s) => s.attributes[Attribute.ATTEMPT]).sort()).toEqual([1, 2]);
    for (const attempt of [...greet, ...flaky]) {
      expect(attempt.spanContext().traceId).toBe(traceId);
      expect(parentOf(attempt)).toBe(startId);
      expect(attempt.attributes).toMatchObject({ [Attribute.RUN_ID]: handle.runId, [Attribute.TASK_QUEUE]: "default" });
    }
    // Each attempt's report is its child: the first flaky attempt failed, the second completed.
    const attemptIds = new Map([...greet, ...flaky].map((s) => [s.spanContext().spanId, s]));
    const reports = [...byName("CompleteActivityTask"), ...byName("FailActivityTask")];
    expect(reports).toHaveLength(3);
    for (const report of reports) expect(attemptIds.has(parentOf(report)!)).toBe(true);
    const failedAttempt = attemptIds.get(parentOf(byName("FailActivityTask")[0]!)!)!;
    expect(failedAttempt.attributes[Attribute.ATTEMPT]).toBe(1);
    expect(failedAttempt.status.code).toBe(2); // SpanStatusCode.ERROR
  });

  it("puts a child run's tasks in its parent's trace", async () => {
    const handle = await client.start(parentWorkflow, { instanceId: "traced-parent" });
    expect(await handle.result()).toEqual({ greeting: "hello child", attempts: 2 });
    const start = traced.exporter.getFinishedSpans().find((s) => s.name === "StartWorkflow:parentWorkflow" && s.attributes[Attribute.RUN_ID] === handle.runId);
    expect(start).toBeDefined();
    const childTasks = await waitFor(() => {
      const found = traced.exporter.getFinishedSpans().filter((s) => s.name === "WorkflowTask:tracedWorkflow" && s.attributes[Attribute.INSTANCE_ID] === "traced-parent-child");
      return found.length === 3 ? found : undefined;
    });
    for (const task of childTasks) {
      expect(task.spanContext().traceId).toBe(start!.spanContext().traceId);
      expect(task.parentSpanContext?.spanId).toBe(start!.spanContext().spanId);
    }
  });

  it("ignores an invalid traceparent: the start succeeds and the run carries no trace context", async () => {
    const response = await client.raw.client.startWorkflow(
      { workflowName: "tracedWorkflow", instanceId: "bad-traceparent", taskQueue: "default", input: { encoding: "json/plain", data: new TextEncoder().encode('"x"') } },
      { metadata: { traceparent: "00-00000000000000000000000000000000-0000000000000000-01" } },
    );
    expect(response.started).toBe(true);
    await client.getHandle({ runId: response.runId }).result();
    const sql = postgres(traced.db.url, { max: 1 });
    try {
      const [row] = await sql<{ trace_context: unknown }[]>`select trace_context from dex.runs where id = ${response.runId}`;
      expect(row).toEqual({ trace_context: null });
    } finally {
      await sql.end();
    }
  });

  it("starts without a trace context when the client does not trace, and its tasks carry none", async () => {
    const plain = createClient({ address: traced.server.address });
    try {
      const handle = await plain.start(tracedWorkflow, { instanceId: "untraced-1", input: "plain" });
      await handle.result();
      const sql = postgres(traced.db.url, { max: 1 });
      try {
        const [row] = await sql<{ trace_context: unknown }[]>`select trace_context from dex.runs where id = ${String(handle.runId)}`;
        expect(row).toEqual({ trace_context: null });
      } finally {
        await sql.end();
      }
      // The worker's spans of this run are roots of their own traces: nothing links them to a start.
      const runSpans = await waitFor(() => {
        const found = traced.exporter.getFinishedSpans().filter((s) => s.name === "WorkflowTask:tracedWorkflow" && s.attributes[Attribute.RUN_ID] === handle.runId);
        return found.length === 3 ? found : undefined;
      });
      for (const span of runSpans) expect(span.parentSpanContext).toBeUndefined();
    } finally {
      plain.close();
    }
  });
});

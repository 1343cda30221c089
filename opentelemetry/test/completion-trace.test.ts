/**
 * The server's spans of completion reports in the run's trace (issue 16): a worker's report sends
 * its span's traceparent, so the server's CompleteWorkflowTask / FailWorkflowTask span is that
 * span's child; a ReportActivityTasks call (outcomes of many runs) is linked to each item's trace
 * context instead. Real server, Postgres, gRPC and workers; spans in an in-memory exporter.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import type { ReadableSpan } from "@opentelemetry/sdk-trace";
import { createServiceClient, WorkerService, type ActivityTask } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { createClient, type Client, type WorkflowContext } from "@dex/sdk";
import { Attribute, tracingClientInterceptor } from "../src/index.js";
import { activities, startTracedServer, type TracedServer } from "./traced-server.js";


/** Instances whose workflow task has failed once (test-only state: real workflow code must not keep any). */
const failedOnce = new Set<string>();

/** Its first workflow task fails (FailWorkflowTask) unless the instance id says no-fail; the next runs greet and flaky. */
async function reportedWorkflow(ctx: WorkflowContext, name: string) {
  const { instanceId } = ctx.info;
  if (!instanceId.includes("no-fail") && !failedOnce.has(instanceId)) {
    failedOnce.add(instanceId);
    throw new Error("first workflow task fails");
  }
  const acts = ctx.activities<typeof activities>({ retry: { initialInterval: "10ms" } });
  return { greeting: await acts.greet(name), attempts: await acts.flaky(undefined) };
}

/** Its activity goes to a queue no worker polls, so the test reports it by hand. */
async function batchedWorkflow(ctx: WorkflowContext, name: string) {
  return ctx.activities<typeof activities>({ taskQueue: "unpolled" }).greet(name);
}

const SERVER_SPAN = "dex.v1.WorkerService/";

describe("the server's completion spans in the run's trace", () => {
  let traced: TracedServer;
  let client: Client;

  beforeAll(async () => {
    traced = await startTracedServer({ queues: ["default", "unpolled"], workflowTaskRetry: { initialMs: 10, maxMs: 10 } });
    traced.startWorkers({ workflows: { reportedWorkflow, batchedWorkflow }, activities });
    client = createClient({ address: traced.server.address, interceptors: [tracingClientInterceptor({ tracer: traced.tracer })] });
  });

  afterAll(async () => {
    client?.close();
    await traced?.close();
  });

  const spans = () => traced.exporter.getFinishedSpans();
  const named = (name: string, runId?: string) => spans().filter((s) => s.name === name && (runId === undefined || s.attributes[Attribute.RUN_ID] === runId));
  const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

  it("makes the server's CompleteWorkflowTask and FailWorkflowTask spans children of the worker's report spans", async () => {
    const handle = await client.start(reportedWorkflow, { instanceId: "reported-1", input: "otel" });
    expect(await handle.result()).toEqual({ greeting: "hello otel", attempts: 2 });
    const runId = String(handle.runId);
    const traceId = named("StartWorkflow:reportedWorkflow", runId)[0]!.spanContext().traceId;

    // One failed task, then three completed ones (start, after greet, after flaky's retry).
    const reports = await waitFor(
      () => {
        const failed = named("FailWorkflowTask", runId);
        const completed = named("CompleteWorkflowTask", runId);
        return failed.length === 1 && completed.length === 3 ? [...failed, ...completed] : undefined;
      },
      { message: "the run's four workflow task report spans" },
    );
    for (const report of reports) {
      expect(report.spanContext().traceId).toBe(traceId);
      // Its server span ended before the report's answer came back, so before the report span did.
      const serverSpans = spans().filter((s) => s.name === SERVER_SPAN + report.name && parentOf(s) === report.spanContext().spanId);
      expect(serverSpans.length, `server span of ${report.name}`).toBeGreaterThanOrEqual(1);
      for (const serverSpan of serverSpans) {
        expect(serverSpan.spanContext().traceId).toBe(traceId);
        expect(serverSpan.attributes["rpc.grpc.status_code"]).toBe("OK");
      }
    }
  });

  it("links the server's ReportActivityTasks span to each activity report the worker sent", async () => {
    const handle = await client.start(reportedWorkflow, { instanceId: "reported-no-fail", input: "links" });
    await handle.result();
    const runId = String(handle.runId);
    const traceId = named("StartWorkflow:reportedWorkflow", runId)[0]!.spanContext().traceId;
    const reports = await waitFor(() => {
      const found = [...named("CompleteActivityTask", runId), ...named("FailActivityTask", runId)];
      return found.length === 3 ? found : undefined;
    });
    const batches = spans().filter((s) => s.name === `${SERVER_SPAN}ReportActivityTasks`);
    for (const report of reports) {
      const linked = batches.filter((b) => b.links.some((l) => l.context.spanId === report.spanContext().spanId));
      expect(linked.length, `a ReportActivityTasks span linked to ${report.name}`).toBeGreaterThanOrEqual(1);
      for (const batch of linked) {
        const link = batch.links.find((l) => l.context.spanId === report.spanContext().spanId)!;
        expect(link.context.traceId).toBe(traceId);
        expect(typeof link.attributes?.["dex.report_item"]).toBe("number");
        // A batch names no single parent: its outcomes may belong to many runs.
        expect(batch.parentSpanContext).toBeUndefined();
      }
    }
  });

  it("links one ReportActivityTasks span to the trace context of each of its runs' items, ignoring an invalid one", async () => {
    const handles = await Promise.all(["a", "b", "c"].map((n) => client.start(batchedWorkflow, { instanceId: `batched-${n}`, input: n })));
    const worker = new grpc.Client(traced.server.address, grpc.credentials.createInsecure());
    try {
      const raw = createServiceClient(WorkerService, worker);
      const tasks: ActivityTask[] = [];
      await waitFor(
        async () => {
          const { tasks: got } = await raw.pollActivityTasks({ taskQueue: "unpolled", maxTasks: 3 - tasks.length, workerId: "by-hand", maxWait: { seconds: 0n, nanos: 200_000_000 } });
          tasks.push(...got);
          return tasks.length === 3 ? true : undefined;
        },
        { message: "the three runs' activity tasks on the unpolled queue" },
      );
      const result = { encoding: "json/plain", data: new TextEncoder().encode('"by hand"') };
      const items = tasks.map((task, i) => ({
        outcome: { case: "complete" as const, value: { taskToken: task.taskToken, result } },
        // The second item's context is malformed: ignored, never refused.
        traceContext: i === 1 ? { traceparent: "00-not-a-trace-context-01" } : task.traceContext,
      }));
      const response = await raw.reportActivityTasks({ items });
      expect(response.results.map((r) => r.code)).toEqual([0, 0, 0]);
      await Promise.all(handles.map((h) => h.result()));

      const runTraces = new Map(handles.map((h) => [String(h.runId), named("StartWorkflow:batchedWorkflow", String(h.runId))[0]!.spanContext()]));
      const batch = await waitFor(() => spans().find((s) => s.name === `${SERVER_SPAN}ReportActivityTasks` && s.links.some((l) => l.attributes?.["dex.report_item"] === 2 && l.context.spanId === runTraces.get(tasks[2]!.runId)!.spanId)));
      expect(batch.links.map((l) => l.attributes?.["dex.report_item"])).toEqual([0, 2]);
      for (const link of batch.links) {
        // Each item carried its run's context (the task's trace_context): the link names that run's start span.
        const start = runTraces.get(tasks[link.attributes!["dex.report_item"] as number]!.runId)!;
        expect(link.context.traceId).toBe(start.traceId);
        expect(link.context.spanId).toBe(start.spanId);
        expect(link.context.isRemote).toBe(true);
      }
    } finally {
      worker.close();
    }
  });
});

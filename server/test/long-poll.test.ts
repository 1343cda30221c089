import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "@dex/proto";
import { byRunId, completeRun, pollWorkflowTaskOf, startHarness, uniqueId, type Harness } from "./helpers.js";

describe("long polls", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ maxPollWaitMs: 10_000 });
    await h.queues.createTaskQueue({ name: "lp", type: 1 });
    await h.queues.createTaskQueue({ name: "lp-empty", type: 1 });
  });
  afterAll(async () => {
    await h.close();
  });

  it("a parked poll wakes when a run starts, well before its deadline", async () => {
    const pollStarted = Date.now();
    const poll = h.worker.pollWorkflowTasks({ taskQueue: "lp", workerId: "w", maxWait: { seconds: 8n } });
    await h.queues.listTaskQueues({}); // the poll has reached the server (same connection, in order)
    const startedAt = Date.now();
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("lp"), taskQueue: "lp" });
    const { tasks } = await poll;
    const answeredAt = Date.now();
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
    // Measured, reported, and asserted only against the poll's own deadline.
    console.info(`long poll woke ${answeredAt - startedAt} ms after the start call began`);
    expect(answeredAt - pollStarted).toBeLessThan(8_000);
  });

  it("a poll parked on another server wakes through NOTIFY", async () => {
    const { startServer, silentLogger } = await import("../src/index.js");
    const other = await startServer({ databaseUrl: h.db.url, port: 0, logger: silentLogger });
    const grpc = await import("@grpc/grpc-js");
    const { WorkerService, createServiceClient } = await import("@dex/proto");
    const channel = new grpc.Client(other.address, grpc.credentials.createInsecure());
    const worker = createServiceClient(WorkerService, channel);
    try {
      const pollStarted = Date.now();
      const poll = worker.pollWorkflowTasks({ taskQueue: "lp", workerId: "w", maxWait: { seconds: 8n } });
      await worker.pollActivityTasks({ taskQueue: "default", workerId: "x", maxWait: { nanos: 1_000_000 } });
      const startedAt = Date.now();
      const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("x"), taskQueue: "lp" });
      const { tasks } = await poll;
      console.info(`cross-server long poll woke ${Date.now() - startedAt} ms after the start call began`);
      expect(tasks.map((t) => t.runId)).toEqual([runId]);
      // Well before both the poll's wait and the 2 s fallback tick.
      expect(Date.now() - pollStarted).toBeLessThan(8_000);
    } finally {
      channel.close();
      await other.close();
    }
  });

  it("answers empty after max_wait", async () => {
    const before = Date.now();
    const { tasks } = await h.worker.pollWorkflowTasks({ taskQueue: "lp-empty", workerId: "w", maxWait: { nanos: 300_000_000 } });
    expect(tasks).toEqual([]);
    expect(Date.now() - before).toBeGreaterThanOrEqual(250);
  });

  it("answers empty before the call's deadline instead of failing with DEADLINE_EXCEEDED", async () => {
    const { tasks } = await h.worker.pollWorkflowTasks(
      { taskQueue: "lp-empty", workerId: "w", maxWait: { seconds: 30n } },
      { deadline: 700 },
    );
    expect(tasks).toEqual([]);
  });

  it("GetRunResult with wait returns as soon as the run ends; without an end it answers the open status", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("res") });
    const open = await h.client.getRunResult({ run: byRunId(runId), wait: true }, { deadline: 600 });
    expect(open.status).toBe(RunStatus.CREATED);
    const waiting = h.client.getRunResult({ run: byRunId(runId), wait: true });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("r")] });
    const result = await waiting;
    expect(result.status).toBe(RunStatus.COMPLETED);
  });

  it("GetRunHistory with wait_new_events returns the next block when it is written", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("hist") });
    const waiting = h.client.getRunHistory({ run: byRunId(runId), afterSequence: 1n, waitNewEvents: true });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("r")] });
    const page = await waiting;
    expect(page.events.map((e) => e.sequence)).toEqual([2n, 3n]);
  });
});

describe("graceful close", () => {
  it("answers parked polls empty at once and then stops", async () => {
    const h = await startHarness({ maxPollWaitMs: 30_000 });
    const poll = h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "w", maxWait: { seconds: 30n } });
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: "x" });
    // The start's task went to the parked poll (the claim made the run RUNNING); park another one,
    // and a result waiter.
    const first = await poll;
    expect(first.tasks).toHaveLength(1);
    const result = h.client.getRunResult({ run: byRunId(runId), wait: true });
    const parked = h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "w", maxWait: { seconds: 30n } });
    // Calls on one channel share one HTTP/2 connection and reach the server in
    // order: once a later call has been answered, the poll has been received.
    await h.queues.listTaskQueues({});
    const closing = h.server.close();
    const before = Date.now();
    expect((await parked).tasks).toEqual([]);
    expect((await result).status).toBe(RunStatus.RUNNING);
    await closing;
    expect(Date.now() - before).toBeLessThan(10_000);
    h.channel.close();
    await h.sql.end();
    await h.db.drop();
  });
});

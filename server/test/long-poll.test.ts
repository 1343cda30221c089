import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "@dex/proto";
import {
  byRunId,
  completeRun,
  PARK,
  parkPoll,
  pollWorkflowTaskOf,
  startHarness,
  uniqueId,
  WAKES_ONLY,
  watchParking,
  wokenBy,
  type Harness,
} from "./helpers.js";

describe("long polls", () => {
  let h: Harness;
  let parking: ReturnType<typeof watchParking>;
  beforeAll(async () => {
    parking = watchParking();
    // No fallback tick and 60 s polls: a parked poll answered at all was answered by a wake-up.
    h = await startHarness(WAKES_ONLY);
    await h.queues.createTaskQueue({ name: "lp", type: 1 });
    await h.queues.createTaskQueue({ name: "lp-empty", type: 1 });
  });
  afterAll(async () => {
    await h.close();
    parking.restore();
  });

  it("a parked poll wakes when a run starts", async () => {
    // Parked (its check found nothing) before the start: only the start's wake-up can answer it.
    const poll = (await parkPoll(parking, "workflow", "lp", () => h.worker.pollWorkflowTasks({ taskQueue: "lp", workerId: "w", maxWait: PARK }))).answer;
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("lp"), taskQueue: "lp" });
    const { tasks } = await wokenBy(poll, "the start's wake-up");
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
  });

  it("a poll parked on another server wakes through NOTIFY", async () => {
    const { startServer, silentLogger } = await import("../src/index.js");
    const other = await startServer({ databaseUrl: h.db.url, port: 0, logger: silentLogger, ...WAKES_ONLY });
    const grpc = await import("@grpc/grpc-js");
    const { WorkerService, createServiceClient } = await import("@dex/proto");
    const channel = new grpc.Client(other.address, grpc.credentials.createInsecure());
    const worker = createServiceClient(WorkerService, channel);
    try {
      // Both servers run in this process and count into one tally: h has no poll of "lp" parked.
      const poll = (await parkPoll(parking, "workflow", "lp", () => worker.pollWorkflowTasks({ taskQueue: "lp", workerId: "w", maxWait: PARK }))).answer;
      const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("x"), taskQueue: "lp" });
      // The start's in-process wake finds no poll on h; only the NOTIFY reaches the other server.
      const { tasks } = await wokenBy(poll, "the NOTIFY of the start on the other server");
      expect(tasks.map((t) => t.runId)).toEqual([runId]);
    } finally {
      channel.close();
      await other.close();
    }
  });

  it("answers empty after max_wait", async () => {
    // A lower bound only: a loaded machine answers later, never earlier.
    const before = Date.now();
    const { tasks } = await h.worker.pollWorkflowTasks({ taskQueue: "lp-empty", workerId: "w", maxWait: { nanos: 300_000_000 } });
    expect(tasks).toEqual([]);
    expect(Date.now() - before).toBeGreaterThanOrEqual(250);
  });

  it("answers empty before the call's deadline instead of failing with DEADLINE_EXCEEDED", async () => {
    const { tasks } = await h.worker.pollWorkflowTasks(
      { taskQueue: "lp-empty", workerId: "w", maxWait: { seconds: 30n } },
      // The server answers min(250 ms, a tenth of the time left) before the deadline: 5 s leaves it
      // the full 250 ms, room for a loaded machine to send the answer.
      { deadline: 5_000 },
    );
    expect(tasks).toEqual([]);
  });

  it("GetRunResult with wait returns as soon as the run ends; without an end it answers the open status", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("res") });
    const open = await h.client.getRunResult({ run: byRunId(runId), wait: true }, { deadline: 5_000 });
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
    // A grace longer than the test: a parked call still open at close would hold close() past the
    // test's timeout (and end CANCELLED), so answered empty means the close answered it.
    const h = await startHarness({ maxPollWaitMs: 30_000, shutdownGraceMs: 120_000 });
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
    expect((await parked).tasks).toEqual([]);
    expect((await result).status).toBe(RunStatus.RUNNING);
    await closing;
    h.channel.close();
    await h.sql.end();
    await h.db.drop();
  });
});

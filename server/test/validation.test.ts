/** Invalid input to every implemented RPC gets the right status and a message naming the field. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError } from "@dex/proto";
import { byRunId, pollWorkflowTaskOf, startHarness, uniqueId, type Harness } from "./helpers.js";

async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "the call should have failed").toBeInstanceOf(DexError);
  expect((err as DexError).code).toBe(code);
  if (message) expect((err as DexError).message).toMatch(message);
}

const long = "x".repeat(256);
const notUuid = { target: { case: "runId" as const, value: "not-a-uuid" } };
const unknownRun = byRunId("0190a1b2-0000-7000-8000-000000000000");

describe("input validation", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("StartWorkflow", async () => {
    const ok = { workflowName: "wf", instanceId: uniqueId("v") };
    await rejectsWith(h.client.startWorkflow({ ...ok, workflowName: "" }), "INVALID_ARGUMENT", /workflow_name is required/);
    await rejectsWith(h.client.startWorkflow({ ...ok, instanceId: "" }), "INVALID_ARGUMENT", /instance_id is required/);
    await rejectsWith(h.client.startWorkflow({ ...ok, instanceId: long }), "INVALID_ARGUMENT", /instance_id is too long/);
    await rejectsWith(h.client.startWorkflow({ ...ok, workflowName: long }), "INVALID_ARGUMENT", /workflow_name/);
    await rejectsWith(h.client.startWorkflow({ ...ok, taskQueue: "bad name!" }), "INVALID_ARGUMENT", /task_queue/);
    await rejectsWith(h.client.startWorkflow({ ...ok, priority: 101 }), "INVALID_ARGUMENT", /priority/);
    await rejectsWith(h.client.startWorkflow({ ...ok, priority: -1 }), "INVALID_ARGUMENT", /priority/);
    await rejectsWith(h.client.startWorkflow({ ...ok, requestId: long }), "INVALID_ARGUMENT", /request_id/);
    await rejectsWith(h.client.startWorkflow({ ...ok, labels: { "": "v" } }), "INVALID_ARGUMENT", /labels/);
    await rejectsWith(h.client.startWorkflow({ ...ok, labels: { k: long } }), "INVALID_ARGUMENT", /labels/);
    await rejectsWith(h.client.startWorkflow({ ...ok, conflictPolicy: 9 as never }), "INVALID_ARGUMENT", /conflict_policy/);
    await rejectsWith(h.client.startWorkflow({ ...ok, reusePolicy: 9 as never }), "INVALID_ARGUMENT", /reuse_policy/);
    await rejectsWith(h.client.startWorkflow({ ...ok, concurrencyKey: "k", concurrencyLimit: -1 }), "INVALID_ARGUMENT", /concurrency_limit/);
    await rejectsWith(h.client.startWorkflow({ ...ok, taskQueue: "missing" }), "NOT_FOUND", /missing/);
    const [{ count } = { count: -1 }] = await h.sql<{ count: number }[]>`select count(*)::int as count from dex.runs`;
    expect(count).toBe(0);
  });

  it("DescribeRun, GetRunHistory, GetRunResult", async () => {
    for (const call of [
      (run: never) => h.client.describeRun({ run }),
      (run: never) => h.client.getRunHistory({ run }),
      (run: never) => h.client.getRunResult({ run }),
    ]) {
      await rejectsWith(call(undefined as never), "INVALID_ARGUMENT", /run is required/);
      await rejectsWith(call(notUuid as never), "INVALID_ARGUMENT", /run.run_id .* is not a run id/);
      await rejectsWith(call({ target: { case: "instanceId", value: "" } } as never), "INVALID_ARGUMENT", /instance_id/);
      await rejectsWith(call(unknownRun as never), "NOT_FOUND", /not found/);
      await rejectsWith(call({ target: { case: "instanceId", value: "nobody" } } as never), "NOT_FOUND", /nobody/);
    }
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("v") });
    await rejectsWith(h.client.getRunHistory({ run: byRunId(runId), afterSequence: -1n }), "INVALID_ARGUMENT", /after_sequence/);
    await rejectsWith(h.client.getRunHistory({ run: byRunId(runId), pageSize: 10_001 }), "INVALID_ARGUMENT", /page_size/);
    await rejectsWith(h.client.getRunHistory({ run: byRunId(runId), pageSize: -1 }), "INVALID_ARGUMENT", /page_size/);
  });

  it("ListRuns", async () => {
    await rejectsWith(h.client.listRuns({ pageSize: 1001 }), "INVALID_ARGUMENT", /page_size/);
    await rejectsWith(h.client.listRuns({ statuses: [42 as never] }), "INVALID_ARGUMENT", /statuses\[0\]/);
    await rejectsWith(h.client.listRuns({ pageToken: "garbage!" }), "INVALID_ARGUMENT", /page_token/);
    await rejectsWith(h.client.listRuns({ pageToken: "AAAA" }), "INVALID_ARGUMENT", /page_token/);
    await rejectsWith(h.client.listRuns({ workflowName: long }), "INVALID_ARGUMENT", /workflow_name/);
    await rejectsWith(h.client.listRuns({ createdAfter: { seconds: 1n, nanos: -5 } }), "INVALID_ARGUMENT", /created_after/);
  });

  it("SendEvent, SendEventWithStart, CancelRun, TerminateRun (details in events.test.ts and cancel-terminate.test.ts)", async () => {
    await rejectsWith(h.client.sendEvent({ eventId: "e" }), "INVALID_ARGUMENT", /run is required/);
    await rejectsWith(h.client.sendEvent({ run: unknownRun, eventId: "" }), "INVALID_ARGUMENT", /event_id is required/);
    await rejectsWith(h.client.sendEvent({ run: unknownRun, eventId: "e" }), "NOT_FOUND", /not found/);
    await rejectsWith(h.client.sendEventWithStart({ eventId: "e" }), "INVALID_ARGUMENT", /start is required/);
    await rejectsWith(h.client.cancelRun({}), "INVALID_ARGUMENT", /run is required/);
    await rejectsWith(h.client.cancelRun({ run: notUuid }), "INVALID_ARGUMENT", /run.run_id/);
    await rejectsWith(h.client.terminateRun({}), "INVALID_ARGUMENT", /run is required/);
    await rejectsWith(h.client.terminateRun({ run: unknownRun }), "NOT_FOUND", /not found/);
  });

  it("PollWorkflowTasks and PollActivityTasks", async () => {
    for (const poll of [h.worker.pollWorkflowTasks, h.worker.pollActivityTasks]) {
      const ok = { taskQueue: "default", workerId: "w", maxWait: { nanos: 1_000_000 } };
      await rejectsWith(poll({ ...ok, taskQueue: "" }), "INVALID_ARGUMENT", /task_queue is required/);
      await rejectsWith(poll({ ...ok, workerId: "" }), "INVALID_ARGUMENT", /worker_id is required/);
      await rejectsWith(poll({ ...ok, workerId: long }), "INVALID_ARGUMENT", /worker_id/);
      await rejectsWith(poll({ ...ok, maxTasks: 101 }), "INVALID_ARGUMENT", /max_tasks/);
      await rejectsWith(poll({ ...ok, maxTasks: -1 }), "INVALID_ARGUMENT", /max_tasks/);
      await rejectsWith(poll({ ...ok, maxWait: { seconds: 61n } }), "INVALID_ARGUMENT", /max_wait/);
      await rejectsWith(poll({ ...ok, maxWait: { seconds: -1n } }), "INVALID_ARGUMENT", /max_wait/);
      await rejectsWith(poll({ ...ok, taskQueue: "missing" }), "NOT_FOUND", /missing/);
    }
  });

  it("task completions, failures and heartbeats", async () => {
    const garbage = new Uint8Array([9, 9, 9]);
    await rejectsWith(h.worker.completeWorkflowTask({}), "INVALID_ARGUMENT", /task_token is required/);
    await rejectsWith(h.worker.completeWorkflowTask({ taskToken: garbage }), "INVALID_ARGUMENT", /task_token/);
    await rejectsWith(h.worker.failWorkflowTask({ taskToken: garbage, failure: { message: "x" } }), "INVALID_ARGUMENT", /task_token/);
    await rejectsWith(h.worker.completeActivityTask({ taskToken: garbage }), "INVALID_ARGUMENT", /task_token/);
    await rejectsWith(h.worker.failActivityTask({ taskToken: garbage, failure: { message: "x" } }), "INVALID_ARGUMENT", /task_token/);
    await rejectsWith(h.worker.heartbeatActivityTask({}), "INVALID_ARGUMENT", /task_token is required/);

    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("v") });
    const task = await pollWorkflowTaskOf(h, runId);
    await rejectsWith(h.worker.failWorkflowTask({ taskToken: task!.taskToken }), "INVALID_ARGUMENT", /failure is required/);
    await rejectsWith(h.worker.failWorkflowTask({ taskToken: task!.taskToken, failure: { message: "x" }, cause: 77 as never }), "INVALID_ARGUMENT", /cause/);
    await h.worker.completeWorkflowTask({
      taskToken: task!.taskToken,
      commands: [{ command: { case: "scheduleActivity", value: { seq: 1, activityName: "a" } } }],
    });
    const [activity] = (await h.worker.pollActivityTasks({ taskQueue: "default", workerId: "a" })).tasks;
    await rejectsWith(h.worker.failActivityTask({ taskToken: activity!.taskToken }), "INVALID_ARGUMENT", /failure is required/);
    await rejectsWith(
      h.worker.failActivityTask({ taskToken: activity!.taskToken, failure: { message: "x" }, nextRetryDelay: { seconds: -5n } }),
      "INVALID_ARGUMENT",
      /next_retry_delay/,
    );
    // The task was not touched by the rejected calls.
    await h.worker.completeActivityTask({ taskToken: activity!.taskToken });
  });

  it("a seq an earlier workflow task used is refused with its name, and nothing is written", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("seq") });
    const first = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({
      taskToken: first!.taskToken,
      commands: [{ command: { case: "startTimer", value: { seq: 1, duration: { seconds: 3600n } } } }],
    });
    // Give the run a second task: an event wakes it.
    await h.client.sendEvent({ run: byRunId(runId), eventId: uniqueId("e") });
    const second = await pollWorkflowTaskOf(h, runId);
    const before = await h.client.getRunHistory({ run: byRunId(runId) });
    await rejectsWith(
      h.worker.completeWorkflowTask({
        taskToken: second!.taskToken,
        commands: [{ command: { case: "scheduleActivity", value: { seq: 1, activityName: "a" } } }],
      }),
      "INVALID_ARGUMENT",
      /seq 1 is already used by an earlier timer_started of this run/,
    );
    const after = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(after.events).toEqual(before.events);
    const [{ count } = { count: -1 }] = await h.sql<{ count: number }[]>`
      select count(*)::int as count from dex.activity_tasks where run_id = ${runId}`;
    expect(count).toBe(0);
    // The task is still this token's: a valid completion goes through.
    await h.worker.completeWorkflowTask({
      taskToken: second!.taskToken,
      commands: [{ command: { case: "scheduleActivity", value: { seq: 2, activityName: "a" } } }],
    });
  });

  it("CreateTaskQueue and ListTaskQueues", async () => {
    await rejectsWith(h.queues.createTaskQueue({ name: "", type: 1 }), "INVALID_ARGUMENT", /name is required/);
    await rejectsWith(h.queues.createTaskQueue({ name: "a b", type: 1 }), "INVALID_ARGUMENT", /name/);
    await rejectsWith(h.queues.createTaskQueue({ name: "q".repeat(65), type: 1 }), "INVALID_ARGUMENT", /name/);
    await rejectsWith(h.queues.createTaskQueue({ name: "q" }), "INVALID_ARGUMENT", /type is required/);
    await rejectsWith(h.queues.createTaskQueue({ name: "q", type: 7 as never }), "INVALID_ARGUMENT", /type/);
    await rejectsWith(h.queues.createTaskQueue({ name: "q", type: 1, capacity: -1 }), "INVALID_ARGUMENT", /capacity/);
    await rejectsWith(h.queues.createTaskQueue({ name: "default", type: 1 }), "ALREADY_EXISTS", /already exists/);
    await rejectsWith(h.queues.listTaskQueues({ type: 9 as never }), "INVALID_ARGUMENT", /type/);
    // Update, pause, resume and delete: server/test/queue-admin.test.ts has their statuses and messages.
    await rejectsWith(h.queues.updateTaskQueue({ name: "default", type: 1, capacity: -5 }), "INVALID_ARGUMENT", /capacity/);
    await rejectsWith(h.queues.pauseTaskQueue({ name: "a b", type: 1 }), "INVALID_ARGUMENT", /name/);
    await rejectsWith(h.queues.resumeTaskQueue({ name: "default" }), "INVALID_ARGUMENT", /type is required/);
    await rejectsWith(h.queues.deleteTaskQueue({ name: "nope", type: 1 }), "NOT_FOUND", /does not exist/);
  });
});

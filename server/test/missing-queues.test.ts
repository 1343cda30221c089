/**
 * Commands naming a task queue that does not exist, through raw worker RPCs:
 * an activity call is recorded and fails in the workflow (TaskQueueNotFound),
 * a child fails to start, continue-as-new is refused until the queue exists.
 * Also with a second server whose queue cache still holds a deleted queue.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FailureKind, RunStatus, TaskQueueType, WorkflowTaskFailedCause, type HistoryEvent } from "@dex/proto";
import {
  byInstance,
  byRunId,
  completeRun,
  kinds,
  pollWorkflowTaskOf,
  rejectsWith,
  scheduleActivity,
  serveDatabase,
  startHarness,
  uniqueId,
  type Harness,
} from "./helpers.js";

const WF = TaskQueueType.WORKFLOW;

function childOn(seq: number, instanceId: string, taskQueue: string) {
  return { command: { case: "startChildRun" as const, value: { seq, workflowName: "child", instanceId, taskQueue } } };
}

function continueAsNewOn(taskQueue: string) {
  return { command: { case: "continueAsNew" as const, value: { taskQueue } } };
}

function failureOf(event: HistoryEvent | undefined) {
  const a = event?.attributes;
  if (a?.case === "activityFailed" || a?.case === "childRunStartFailed") return a.value.failure;
  throw new Error(`expected an activity or child start failure, got ${a?.case}`);
}

async function count(h: Harness, table: "activity_tasks" | "workflow_tasks" | "inbox", runId: string): Promise<number> {
  const [row] = await h.sql<{ n: number }[]>`select count(*)::int as n from ${h.sql("dex." + table)} where run_id = ${runId}`;
  return row!.n;
}

describe("commands naming a task queue that does not exist", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ workflowTaskRetry: { initialMs: 50, maxMs: 100 } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("schedule_activity: recorded, no task; activity_failed (TaskQueueNotFound, attempt 0) wakes the run", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("act") });
    const first = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({
      taskToken: first.taskToken,
      commands: [scheduleActivity(1, "charge", { taskQueue: "nope" }), scheduleActivity(2, "ship")],
    });

    // Both calls are in history; only the one on an existing queue has a task.
    const history = (await h.client.getRunHistory({ run: byRunId(runId) })).events;
    expect(kinds(history)).toEqual(["runStarted", "workflowTaskCompleted", "activityScheduled", "activityScheduled"]);
    const scheduled = history[2]!.attributes;
    expect(scheduled.case === "activityScheduled" && scheduled.value.taskQueue).toBe("nope");
    expect(await h.sql`select seq, queue_name from dex.activity_tasks where run_id = ${runId}`).toEqual([
      { seq: 2, queue_name: "default" },
    ]);
    // The failure waits in the inbox, and the same commit gave the run its next workflow task.
    expect(await h.sql`select kind, dedup_key from dex.inbox where run_id = ${runId}`).toEqual([
      { kind: "activity_failed", dedup_key: "activity-result:1" },
    ]);
    expect(await count(h, "workflow_tasks", runId)).toBe(1);

    const next = await pollWorkflowTaskOf(h, runId);
    expect(kinds(next.newEvents)).toEqual(["activityFailed"]);
    const a = next.newEvents[0]!.attributes;
    expect(a.case === "activityFailed" && { seq: a.value.seq, attempt: a.value.attempt }).toEqual({ seq: 1, attempt: 0 });
    expect(failureOf(next.newEvents[0])).toMatchObject({
      type: "TaskQueueNotFound",
      kind: FailureKind.SERVER,
      nonRetryable: true,
      message: 'activity task queue "nope" does not exist; create it with `dex queue create nope --type activity`',
    });

    // It reaches history with the block, under the key every activity outcome has.
    await h.worker.completeWorkflowTask({ taskToken: next.taskToken, commands: [completeRun("caught")] });
    expect(await h.sql`select kind, dedup_key from dex.history_events where run_id = ${runId} and sequence = 5`).toEqual([
      { kind: "activity_failed", dedup_key: "activity-result:1" },
    ]);
    expect((await h.client.getRunResult({ run: byRunId(runId) })).status).toBe(RunStatus.COMPLETED);
  });

  it("schedule_activity on a missing queue in a completion that ends the run leaves nothing behind", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("act-end") });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({
      taskToken: task.taskToken,
      commands: [scheduleActivity(1, "charge", { taskQueue: "nope" }), completeRun("done")],
    });
    expect((await h.client.getRunResult({ run: byRunId(runId) })).status).toBe(RunStatus.COMPLETED);
    expect([await count(h, "inbox", runId), await count(h, "workflow_tasks", runId), await count(h, "activity_tasks", runId)]).toEqual([0, 0, 0]);
  });

  it("start_child_run: child_run_start_failed of type TaskQueueNotFound, next to an instance-id conflict", async () => {
    const instanceId = uniqueId("parent");
    const childId = uniqueId("child");
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId });
    const first = await pollWorkflowTaskOf(h, runId);
    // seq 2 names the parent's own instance id, which has an open run (the parent).
    await h.worker.completeWorkflowTask({ taskToken: first.taskToken, commands: [childOn(1, childId, "nope"), childOn(2, instanceId, "default")] });

    expect(await h.sql`select id from dex.runs where instance_id = ${childId}`).toHaveLength(0);
    const next = await pollWorkflowTaskOf(h, runId);
    expect(kinds(next.newEvents)).toEqual(["childRunStartFailed", "childRunStartFailed"]);
    expect(failureOf(next.newEvents[0])).toMatchObject({
      type: "TaskQueueNotFound",
      kind: FailureKind.SERVER,
      nonRetryable: true,
      message: 'workflow task queue "nope" does not exist; create it with `dex queue create nope --type workflow`',
    });
    expect(failureOf(next.newEvents[1])).toMatchObject({ type: "InstanceIdConflict", kind: FailureKind.SERVER });
    await h.worker.completeWorkflowTask({ taskToken: next.taskToken, commands: [completeRun("ok")] });
  });

  it("continue_as_new: refused (FAILED_PRECONDITION), nothing written; the run continues once the queue exists", async () => {
    const instanceId = uniqueId("can");
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId });
    const task = await pollWorkflowTaskOf(h, runId);
    const refused = await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(1, "a"), continueAsNewOn("later")] }),
      "FAILED_PRECONDITION",
      /workflow task queue "later" does not exist.*`dex queue create later --type workflow`/,
    );
    expect(kinds((await h.client.getRunHistory({ run: byRunId(runId) })).events)).toEqual(["runStarted"]);
    expect(await count(h, "activity_tasks", runId)).toBe(0);
    expect(await h.sql`select id from dex.runs where instance_id = ${instanceId}`).toHaveLength(1);

    // What a worker does with the refusal: fail the task. The run stays open and shows why.
    await h.worker.failWorkflowTask({ taskToken: task.taskToken, failure: { message: refused.message }, cause: WorkflowTaskFailedCause.WORKER_ERROR });
    const described = await h.client.describeRun({ run: byRunId(runId) });
    expect(described.info?.status).toBe(RunStatus.RUNNING);
    expect(described.pendingWorkflowTask?.lastFailure?.message).toMatch(/"later" does not exist/);

    await h.queues.createTaskQueue({ name: "later", type: WF });
    const retry = await pollWorkflowTaskOf(h, runId);
    expect(retry.attempt).toBe(2);
    await h.worker.completeWorkflowTask({ taskToken: retry.taskToken, commands: [continueAsNewOn("later")] });
    const continued = await h.client.describeRun({ run: byInstance(instanceId) });
    expect(continued.info?.runId).not.toBe(runId);
    expect(continued.info?.taskQueue).toBe("later");
    const newTask = await pollWorkflowTaskOf(h, continued.info!.runId, "w1", "later");
    await h.worker.completeWorkflowTask({ taskToken: newTask.taskToken, commands: [completeRun("done")] });
  });

  it("a workflow queue deleted through another server: continue-as-new is refused and a child fails to start, never INTERNAL", async () => {
    const two = await serveDatabase(h.db);
    try {
      await h.queues.createTaskQueue({ name: "gone", type: WF });
      // Server two learns the queue (a poll checks it exists), then server one deletes it.
      await two.worker.pollWorkflowTasks({ taskQueue: "gone", workerId: "x", maxTasks: 1, maxWait: { nanos: 1_000_000 } });
      await h.queues.deleteTaskQueue({ name: "gone", type: WF });

      const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("gone") });
      const task = await pollWorkflowTaskOf(two, runId);
      // Two's cache says the queue exists; the new run's insert finds it missing: refused, all rolled back.
      await rejectsWith(
        two.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNewOn("gone")] }),
        "FAILED_PRECONDITION",
        /workflow task queue "gone" does not exist/,
      );
      // ... and forgotten: the check answers the same without an insert.
      await rejectsWith(
        two.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNewOn("gone")] }),
        "FAILED_PRECONDITION",
        /workflow task queue "gone" does not exist/,
      );
      expect(kinds((await h.client.getRunHistory({ run: byRunId(runId) })).events)).toEqual(["runStarted"]);

      // The same token still works: a child on the deleted queue fails to start.
      await two.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [childOn(1, uniqueId("gone-child"), "gone")] });
      const next = await pollWorkflowTaskOf(two, runId);
      expect(kinds(next.newEvents)).toEqual(["childRunStartFailed"]);
      expect(failureOf(next.newEvents[0])).toMatchObject({ type: "TaskQueueNotFound" });
      await two.worker.completeWorkflowTask({ taskToken: next.taskToken, commands: [completeRun("ok")] });
    } finally {
      await two.close();
    }
  });
});

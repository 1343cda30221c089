import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "@dex/proto";
import { fromJson, json, kinds, startHarness, uniqueId, type Harness } from "./helpers.js";

describe("a workflow from start to result", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("start -> workflow task -> activity -> workflow task with the result -> complete_run -> result", async () => {
    const instanceId = uniqueId("order");
    const started = await h.client.startWorkflow({ workflowName: "order", instanceId, input: json({ n: 2 }) });
    expect(started.started).toBe(true);

    const first = await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "w1" });
    expect(first.tasks).toHaveLength(1);
    const task1 = first.tasks[0]!;
    expect(task1.runId).toBe(started.runId);
    expect(task1.attempt).toBe(1);
    expect(task1.historyLength).toBe(1n);
    expect(kinds(task1.history)).toEqual(["runStarted"]);
    expect(task1.newEvents).toEqual([]);
    const runStarted = task1.history[0]!.attributes;
    expect(runStarted.case === "runStarted" && fromJson(runStarted.value.input)).toEqual({ n: 2 });

    const done1 = await h.worker.completeWorkflowTask({
      taskToken: task1.taskToken,
      commands: [{ command: { case: "scheduleActivity", value: { seq: 1, activityName: "double", input: json(2) } } }],
    });
    expect(done1.historyLength).toBe(3n);

    const activities = await h.worker.pollActivityTasks({ taskQueue: "default", workerId: "a1" });
    expect(activities.tasks).toHaveLength(1);
    const activity = activities.tasks[0]!;
    expect(activity).toMatchObject({ runId: started.runId, seq: 1, activityName: "double", attempt: 1, instanceId });
    expect(fromJson(activity.input)).toBe(2);
    await h.worker.completeActivityTask({ taskToken: activity.taskToken, result: json(4) });

    const second = await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "w1" });
    const task2 = second.tasks[0]!;
    expect(task2.historyLength).toBe(3n);
    expect(task2.history).toEqual([]); // sticky: w1 completed the previous task
    expect(kinds(task2.newEvents)).toEqual(["activityCompleted"]);
    expect(task2.newEvents[0]!.sequence).toBe(4n);
    const completed = task2.newEvents[0]!.attributes;
    expect(completed.case === "activityCompleted" && fromJson(completed.value.result)).toBe(4);

    const done2 = await h.worker.completeWorkflowTask({
      taskToken: task2.taskToken,
      commands: [{ command: { case: "completeRun", value: { result: json({ total: 4 }) } } }],
    });
    expect(done2.historyLength).toBe(6n);

    const result = await h.client.getRunResult({ run: { target: { case: "runId", value: started.runId } }, wait: true });
    expect(result.status).toBe(RunStatus.COMPLETED);
    expect(fromJson(result.result)).toEqual({ total: 4 });

    const history = await h.client.getRunHistory({ run: { target: { case: "instanceId", value: instanceId } } });
    expect(kinds(history.events)).toEqual([
      "runStarted",
      "workflowTaskCompleted",
      "activityScheduled",
      "activityCompleted",
      "workflowTaskCompleted",
      "runCompleted",
    ]);
    expect(history.events.map((e) => e.sequence)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect(history.historyLength).toBe(6n);
    expect(history.status).toBe(RunStatus.COMPLETED);
    // The marker's time is the task time handed out with the task.
    expect(history.events[1]!.time).toEqual(task1.taskTime);
    // activity_scheduled records the resolved defaults.
    const scheduled = history.events[2]!.attributes;
    expect(scheduled.case).toBe("activityScheduled");
    if (scheduled.case === "activityScheduled") {
      expect(scheduled.value.taskQueue).toBe("default");
      expect(scheduled.value.priority).toBe(50);
      expect(scheduled.value.startToCloseTimeout?.seconds).toBe(300n);
      expect(scheduled.value.retryPolicy?.backoffCoefficient).toBe(2);
      expect(scheduled.value.retryPolicy?.maximumInterval?.seconds).toBe(100n);
    }
    const marker = history.events[4]!.attributes;
    expect(marker.case === "workflowTaskCompleted" && marker.value).toMatchObject({ workerId: "w1", attempt: 1 });

    // Nothing is left behind: no tasks, no inbox rows.
    const [left] = await h.sql`
      select (select count(*) from dex.workflow_tasks where run_id = ${started.runId})::int as wf,
             (select count(*) from dex.activity_tasks where run_id = ${started.runId})::int as act,
             (select count(*) from dex.inbox where run_id = ${started.runId})::int as inbox`;
    expect(left).toEqual({ wf: 0, act: 0, inbox: 0 });
  });
});

describe("run metadata commands", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("records side effects, custom status and label upserts", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "meta", instanceId: uniqueId("meta"), labels: { a: "1" } });
    const task = await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "w" });
    await h.worker.completeWorkflowTask({
      taskToken: task.tasks[0]!.taskToken,
      commands: [
        { command: { case: "recordSideEffect", value: { seq: 1, value: json("rnd") } } },
        { command: { case: "setCustomStatus", value: { customStatus: "charging" } } },
        { command: { case: "upsertLabels", value: { labels: { b: "2", a: "3" } } } },
      ],
    });
    const described = await h.client.describeRun({ run: { target: { case: "runId", value: runId } } });
    expect(described.info).toMatchObject({ customStatus: "charging", labels: { a: "3", b: "2" }, status: RunStatus.RUNNING });
    const history = await h.client.getRunHistory({ run: { target: { case: "runId", value: runId } } });
    expect(kinds(history.events)).toEqual(["runStarted", "workflowTaskCompleted", "sideEffectRecorded", "customStatusSet", "labelsUpserted"]);
    const listed = await h.client.listRuns({ labels: { b: "2" } });
    expect(listed.runs.map((r) => r.runId)).toEqual([runId]);
  });
});

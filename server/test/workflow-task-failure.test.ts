import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FailureKind, RunStatus, WorkflowTaskFailedCause } from "@dex/proto";
import { byRunId, completeRun, kinds, pollWorkflowTaskOf, scheduleActivity, startHarness, uniqueId, type Harness } from "./helpers.js";

describe("FailWorkflowTask", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ workflowTaskRetry: { initialMs: 100, maxMs: 300 } });
  });
  afterAll(async () => {
    await h.close();
  });

  it("keeps the run open, writes no history, shows the failure, and retries with back-off", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("nd") });
    const first = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: first.taskToken, commands: [scheduleActivity(1, "a")] });
    // Make the run receive input so the next task has new events.
    const [activity] = (await h.worker.pollActivityTasks({ taskQueue: "default", workerId: "a", maxTasks: 1 })).tasks;
    await h.worker.completeActivityTask({ taskToken: activity!.taskToken });

    const task = await pollWorkflowTaskOf(h, runId, "w1");
    expect(task.history).toEqual([]); // sticky
    const failed = await h.worker.failWorkflowTask({
      taskToken: task.taskToken,
      failure: { message: "non-determinism: expected activity a, got b" },
      cause: WorkflowTaskFailedCause.NON_DETERMINISM,
    });
    expect(failed.nextAttemptTime).toBeDefined();

    const described = await h.client.describeRun({ run: byRunId(runId) });
    expect(described.info?.status).toBe(RunStatus.RUNNING);
    expect(described.pendingWorkflowTask?.lastFailure).toMatchObject({
      message: "non-determinism: expected activity a, got b",
      kind: FailureKind.NON_DETERMINISM,
    });
    expect(described.pendingWorkflowTask?.attempt).toBe(2);
    expect((await h.client.getRunHistory({ run: byRunId(runId) })).events).toHaveLength(3);

    // The retry comes after the back-off, with the full history (the cache may be what failed)
    // and the same new events.
    const retry = await pollWorkflowTaskOf(h, runId, "w1");
    expect(retry.attempt).toBe(2);
    expect(kinds(retry.history)).toEqual(["runStarted", "workflowTaskCompleted", "activityScheduled"]);
    expect(kinds(retry.newEvents)).toEqual(["activityCompleted"]);
    await h.worker.completeWorkflowTask({ taskToken: retry.taskToken, commands: [completeRun("fixed")] });
    const result = await h.client.getRunResult({ run: byRunId(runId) });
    expect(result.status).toBe(RunStatus.COMPLETED);
    const marker = (await h.client.getRunHistory({ run: byRunId(runId), afterSequence: 4n })).events[0]!.attributes;
    expect(marker.case === "workflowTaskCompleted" && marker.value.attempt).toBe(2);
  });

  it("invalid commands are rejected and nothing is written; the task stays leased to its worker", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("bad") });
    const task = await pollWorkflowTaskOf(h, runId);
    const attempts = [
      [completeRun(1), scheduleActivity(1, "a")],
      [scheduleActivity(1, "a"), scheduleActivity(1, "b")],
      [scheduleActivity(0, "a")],
      [scheduleActivity(1, "")],
      [scheduleActivity(1, "a", { startToCloseTimeout: { seconds: -1n } })],
      [scheduleActivity(1, "a", { priority: 101 })],
      [scheduleActivity(1, "a", { retryPolicy: { backoffCoefficient: 0.5 } })],
      [{ command: { case: undefined } }],
      // Timers, events, children: malformed, or naming a seq this run never created.
      [{ command: { case: "startTimer", value: { seq: 1 } } }],
      [{ command: { case: "startTimer", value: { seq: 1, duration: { seconds: -5n } } } }],
      // A fire time outside what durations allow around the task time (Postgres cannot even hold
      // the first one: it used to answer INTERNAL, and the task retried forever), or set with a duration.
      [{ command: { case: "startTimer", value: { seq: 1, fireTime: { seconds: -8_000_000_000_000n } } } }],
      [{ command: { case: "startTimer", value: { seq: 1, fireTime: { seconds: 8_000_000_000_000n } } } }],
      [{ command: { case: "startTimer", value: { seq: 1, fireTime: { seconds: BigInt(Math.floor(Date.now() / 1000) + 11 * 366 * 86_400) } } } }],
      [{ command: { case: "startTimer", value: { seq: 1, fireTime: { seconds: 1_700_000n } } } }],
      [{ command: { case: "startTimer", value: { seq: 1, duration: { seconds: 5n }, fireTime: { seconds: BigInt(Math.floor(Date.now() / 1000)) } } } }],
      [{ command: { case: "cancelTimer", value: { seq: 7 } } }],
      [scheduleActivity(1, "a"), { command: { case: "cancelTimer", value: { seq: 1 } } }],
      [{ command: { case: "requestCancelActivity", value: { seq: 3 } } }],
      [{ command: { case: "waitForEvent", value: { seq: 1, eventId: "" } } }],
      [{ command: { case: "startChildRun", value: { seq: 1, workflowName: "child", instanceId: "" } } }],
      [{ command: { case: "startChildRun", value: { seq: 1, workflowName: "", instanceId: "c-1" } } }],
      [{ command: { case: "requestCancelChildRun", value: { seq: 2 } } }],
      // A seq error is found whatever else the completion names: a missing queue does not hide it.
      [scheduleActivity(1, "a", { taskQueue: "missing-queue" }), { command: { case: "cancelTimer", value: { seq: 1 } } }],
    ];
    for (const commands of attempts) {
      await expect(
        h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: commands as never }),
        JSON.stringify(commands, (_, v: unknown) => (typeof v === "bigint" ? String(v) : v)),
      ).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    }
    // A missing queue is not an invalid command (see missing-queues.test.ts), except that continue-as-new
    // to one is refused, also writing nothing (FAILED_PRECONDITION: the run waits for the queue).
    await expect(
      h.worker.completeWorkflowTask({
        taskToken: task.taskToken,
        commands: [scheduleActivity(1, "a"), { command: { case: "continueAsNew", value: { taskQueue: "missing-queue" } } }],
      }),
    ).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
    const history = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(kinds(history.events)).toEqual(["runStarted"]);
    const [{ count } = { count: -1 }] = await h.sql<{ count: number }[]>`select count(*)::int as count from dex.activity_tasks where run_id = ${runId}`;
    expect(count).toBe(0);
    // The same token still works.
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("ok")] });
  });
});

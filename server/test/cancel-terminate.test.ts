/** CancelRun and TerminateRun against a real server and database: recording, fencing, family, races with claims. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { DexError, FailureKind, HistoryEventSchema, ParentClosePolicy, RunStatus, TaskQueueType } from "@dex/proto";
import { waitFor } from "@dex/testing";
import {
  byInstance,
  byRunId,
  completeRun,
  json,
  kinds,
  pollActivityOf,
  pollWorkflowTaskOf,
  scheduleActivity,
  serverLockWaiters,
  startHarness,
  startWith,
  uniqueId,
  rejectsWith,
  startChild,
  unknownRun,
  type Harness,
} from "./helpers.js";




describe("cancellation and termination", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  /** Workflow task, activity tasks, inbox rows and timers still held for a run. */
  async function pendingRows(runId: string): Promise<Record<string, number>> {
    const [row] = await h.sql<{ workflow_tasks: number; activity_tasks: number; inbox: number; timers: number }[]>`
      select (select count(*)::int from dex.workflow_tasks where run_id = ${runId}) as workflow_tasks,
             (select count(*)::int from dex.activity_tasks where run_id = ${runId}) as activity_tasks,
             (select count(*)::int from dex.inbox where run_id = ${runId}) as inbox,
             (select count(*)::int from dex.timers where run_id = ${runId}) as timers`;
    return { ...row! };
  }

  async function inboxEvents(runId: string) {
    const rows = await h.sql<{ event: Buffer }[]>`select event from dex.inbox where run_id = ${runId} order by id`;
    return rows.map((r) => fromBinary(HistoryEventSchema, r.event).attributes);
  }

  it("CancelRun records the request once and hands it to the workflow, which ends the run CANCELLED", async () => {
    const instanceId = uniqueId("cancel");
    const runId = await startWith(h, [scheduleActivity(1, "slow")], { instanceId });
    expect((await pendingRows(runId)).workflow_tasks).toBe(0);

    const first = await h.client.cancelRun({ run: byInstance(instanceId), reason: "customer asked" });
    expect(first).toMatchObject({ runId, alreadyRequested: false });
    const again = await h.client.cancelRun({ run: byRunId(runId), reason: "twice" });
    expect(again).toMatchObject({ runId, alreadyRequested: true });
    const inbox = await inboxEvents(runId);
    expect(inbox).toHaveLength(1);
    expect(inbox[0]).toMatchObject({ case: "cancelRequested", value: { reason: "customer asked" } });
    expect((await pendingRows(runId)).workflow_tasks).toBe(1);

    const described = await h.client.describeRun({ run: byRunId(runId) });
    expect(described.waitingReason).toMatch(/cancellation requested .*customer asked/);
    expect(described.info?.status).toBe(RunStatus.RUNNING);

    const task = await pollWorkflowTaskOf(h, runId);
    expect(kinds(task.newEvents)).toEqual(["cancelRequested"]);
    await h.worker.completeWorkflowTask({
      taskToken: task.taskToken,
      commands: [
        { command: { case: "requestCancelActivity", value: { seq: 1 } } },
        { command: { case: "cancelRun", value: {} } },
      ],
    });
    const result = await h.client.getRunResult({ run: byRunId(runId) });
    expect(result.status).toBe(RunStatus.CANCELLED);
    await rejectsWith(h.client.cancelRun({ run: byRunId(runId) }), "FAILED_PRECONDITION", /CANCELLED/);
    expect(await pendingRows(runId)).toEqual({ workflow_tasks: 0, activity_tasks: 0, inbox: 0, timers: 0 });
  });

  it("CancelRun of a run still CREATED is delivered with its first task", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("cancel-created") });
    await h.client.cancelRun({ run: byRunId(runId), reason: "" });
    const task = await pollWorkflowTaskOf(h, runId);
    expect(kinds(task.history)).toEqual(["runStarted"]);
    expect(kinds(task.newEvents)).toEqual(["cancelRequested"]);
  });

  it("rejects invalid CancelRun and TerminateRun requests, and unknown runs", async () => {
    for (const call of [
      (req: object) => h.client.cancelRun(req),
      (req: object) => h.client.terminateRun(req),
    ]) {
      await rejectsWith(call({}), "INVALID_ARGUMENT", /run is required/);
      await rejectsWith(call({ run: byRunId("not-a-uuid") }), "INVALID_ARGUMENT", /run\.run_id .* is not a run id/);
      await rejectsWith(call({ run: byInstance("") }), "INVALID_ARGUMENT", /run\.instance_id is required/);
      await rejectsWith(call({ run: byInstance("x".repeat(256)) }), "INVALID_ARGUMENT", /run\.instance_id is too long/);
      await rejectsWith(call({ run: unknownRun, reason: "r".repeat(1001) }), "INVALID_ARGUMENT", /reason is too long/);
      await rejectsWith(call({ run: unknownRun, reason: "a\u0000" }), "INVALID_ARGUMENT", /reason must not contain NUL/);
      await rejectsWith(call({ run: unknownRun }), "NOT_FOUND", /not found/);
      await rejectsWith(call({ run: byInstance(uniqueId("nobody")) }), "NOT_FOUND", /nobody/);
    }
  });

  it("TerminateRun ends the run at once; its in-flight task and activity are fenced out and history stays as it was", async () => {
    const runId = await startWith(h, [
      scheduleActivity(1, "work"),
      { command: { case: "startTimer", value: { seq: 2, duration: { seconds: 3600n } } } },
      { command: { case: "waitForEvent", value: { seq: 3, eventId: "go", timeout: { seconds: 600n } } } },
    ]);
    const activity = await pollActivityOf(h, runId, 1);
    await h.client.sendEvent({ run: byRunId(runId), eventId: "go" });
    const task = await pollWorkflowTaskOf(h, runId); // in flight
    await h.client.sendEvent({ run: byRunId(runId), eventId: "later" }); // waits in the inbox
    expect(await pendingRows(runId)).toEqual({ workflow_tasks: 1, activity_tasks: 1, inbox: 2, timers: 2 });
    const waiting = h.client.getRunResult({ run: byRunId(runId), wait: true });

    expect(await h.client.terminateRun({ run: byRunId(runId), reason: "operator says stop" })).toEqual(
      expect.objectContaining({ runId }),
    );
    const result = await waiting;
    expect(result.status).toBe(RunStatus.TERMINATED);
    expect(result.failure).toMatchObject({ kind: FailureKind.TERMINATED });
    expect(result.failure?.message).toContain("operator says stop");
    expect(await pendingRows(runId)).toEqual({ workflow_tasks: 0, activity_tasks: 0, inbox: 0, timers: 0 });

    const history = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(kinds(history.events)).toEqual(["runStarted", "workflowTaskCompleted", "activityScheduled", "timerStarted", "eventWaitStarted", "runTerminated"]);
    const last = history.events.at(-1)!;
    expect(last.attributes).toMatchObject({ case: "runTerminated", value: { reason: "operator says stop" } });
    expect(last.sequence).toBe(6n);
    expect(history.historyLength).toBe(6n);

    await rejectsWith(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("late")] }), "NOT_FOUND");
    await rejectsWith(h.worker.completeActivityTask({ taskToken: activity.taskToken, result: json("late") }), "NOT_FOUND");
    await rejectsWith(h.worker.heartbeatActivityTask({ taskToken: activity.taskToken }), "NOT_FOUND");
    expect((await h.client.getRunHistory({ run: byRunId(runId) })).events).toEqual(history.events);
    const described = await h.client.describeRun({ run: byRunId(runId) });
    expect(described.info?.status).toBe(RunStatus.TERMINATED);
    expect(described.pendingWorkflowTask).toBeUndefined();
    expect(described.pendingActivities).toEqual([]);
    expect(described.pendingTimers).toEqual([]);
    expect(described.pendingEventWaits).toEqual([]);
    expect(described.info?.endTime).toBeDefined();

    await rejectsWith(h.client.terminateRun({ run: byRunId(runId) }), "FAILED_PRECONDITION", /TERMINATED/);
    await rejectsWith(h.client.cancelRun({ run: byRunId(runId) }), "FAILED_PRECONDITION", /TERMINATED/);
    await rejectsWith(h.client.sendEvent({ run: byRunId(runId), eventId: "x" }), "FAILED_PRECONDITION", /TERMINATED/);
  });

  it("terminating a child tells its parent with child_run_ended and wakes the parent", async () => {
    const childInstance = uniqueId("child");
    const parentId = await startWith(h, [startChild(1, childInstance, ParentClosePolicy.CANCEL)]);
    const child = await h.client.describeRun({ run: byInstance(childInstance) });
    expect(child.info?.parentRunId).toBe(parentId);

    await h.client.terminateRun({ run: byInstance(childInstance), reason: "bad child" });
    const task = await pollWorkflowTaskOf(h, parentId);
    const ended = task.newEvents.find((e) => e.attributes.case === "childRunEnded")?.attributes;
    expect(ended).toMatchObject({ case: "childRunEnded", value: { seq: 1, status: RunStatus.TERMINATED } });
    expect(ended?.case === "childRunEnded" && ended.value.failure?.message).toContain("bad child");
  });

  it("terminating a parent requests cancellation of its CANCEL children and leaves ABANDON children alone", async () => {
    const cancelled = uniqueId("child-cancel");
    const abandoned = uniqueId("child-abandon");
    const parentId = await startWith(h, [
      startChild(1, cancelled, ParentClosePolicy.UNSPECIFIED),
      startChild(2, abandoned, ParentClosePolicy.ABANDON),
    ]);
    await h.client.terminateRun({ run: byRunId(parentId), reason: "stop all" });

    const cancelledRun = await h.client.describeRun({ run: byInstance(cancelled) });
    const abandonedRun = await h.client.describeRun({ run: byInstance(abandoned) });
    expect(cancelledRun.info?.status).toBe(RunStatus.CREATED);
    expect(cancelledRun.waitingReason).toMatch(/cancellation requested/);
    expect((await inboxEvents(cancelledRun.info!.runId)).map((a) => a.case)).toEqual(["cancelRequested"]);
    expect(abandonedRun.waitingReason).not.toMatch(/cancellation/);
    expect(await inboxEvents(abandonedRun.info!.runId)).toEqual([]);
    // The terminated parent still lists its children that are running.
    const parent = await h.client.describeRun({ run: byRunId(parentId) });
    expect(parent.pendingChildRuns.map((c) => c.seq)).toEqual([1, 2]);
    // A CancelRun on the child now says it was already asked.
    expect(await h.client.cancelRun({ run: byInstance(cancelled) })).toMatchObject({ alreadyRequested: true });
  });

  /** Server connections of this test's database that wait for a lock. */
  // The interleaving that deadlocks a careless writer, forced with a row lock
  // held by the test: the operation waits for the run row; then a claim locks
  // the run's task row and queues for the run row behind it. When the test
  // lets go, the operation holds the run row and must not wait for the task
  // row (the claim holds it, waiting for us).
  it.each(["terminate", "cancel", "sendEvent"] as const)(
    "%s of a CREATED run whose task is being claimed neither deadlocks nor loses the claim",
    async (operation) => {
      const queue = `claim-${operation.toLowerCase()}`;
      await h.queues.createTaskQueue({ name: queue, type: TaskQueueType.WORKFLOW });
      const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("claimed"), taskQueue: queue });
      let done: Promise<unknown> | undefined;
      let poll: ReturnType<Harness["worker"]["pollWorkflowTasks"]> | undefined;
      await h.sql.begin(async (tx) => {
        await tx`select 1 from dex.runs where id = ${runId} for no key update`;
        const run = byRunId(runId);
        done =
          operation === "terminate"
            ? h.client.terminateRun({ run, reason: "now" })
            : operation === "cancel"
              ? h.client.cancelRun({ run, reason: "now" })
              : h.client.sendEvent({ run, eventId: "e" });
        await waitFor(async () => (await serverLockWaiters(h)) === 1, { message: `the ${operation} to wait for the run row` });
        poll = h.worker.pollWorkflowTasks({ taskQueue: queue, workerId: "claimer", maxTasks: 1, maxWait: { seconds: 10n } });
        await waitFor(async () => (await serverLockWaiters(h)) === 2, { message: "the claim to wait for the run row" });
      });
      await done;
      const { tasks } = await poll!;
      expect(tasks.map((t) => t.runId)).toEqual([runId]);
      const task = tasks[0]!;
      if (operation === "terminate") {
        expect((await h.client.describeRun({ run: byRunId(runId) })).info?.status).toBe(RunStatus.TERMINATED);
        expect(await pendingRows(runId)).toEqual({ workflow_tasks: 0, activity_tasks: 0, inbox: 0, timers: 0 });
        await rejectsWith(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [] }), "NOT_FOUND");
      } else {
        // The claim won the run row: its task was handed out without the new inbox row,
        // which gets the next task once this one completes.
        expect(task.newEvents).toEqual([]);
        await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [] });
        const next = await pollWorkflowTaskOf(h, runId, "claimer", queue);
        expect(kinds(next.newEvents)).toEqual([operation === "cancel" ? "cancelRequested" : "externalEventReceived"]);
      }
    },
  );

  it("terminates and cancels runs while workers claim their first tasks and events keep the runs locked, without deadlocks", async () => {
    // A claim locks a CREATED run's task row, then waits for the run row; a
    // burst of SendEvents keeps the run row locked, so claims are parked
    // exactly there while the terminate or cancel comes in.
    const runIds = await Promise.all(
      Array.from({ length: 12 }, async () => (await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("tc-race") })).runId),
    );
    const ours = new Set(runIds);
    let polling = true;
    const claimedTokens = new Map<string, Uint8Array>();
    const pollers = Array.from({ length: 3 }, async (_, i) => {
      while (polling) {
        const { tasks } = await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: `racer-${i}`, maxTasks: 2, maxWait: { seconds: 1n } });
        for (const t of tasks) if (ours.has(t.runId)) claimedTokens.set(t.runId, t.taskToken);
      }
    });
    const toTerminate = runIds.slice(0, 6);
    const toCancel = runIds.slice(6);
    const events = (runId: string) =>
      Array.from({ length: 8 }, (_, i) =>
        h.client.sendEvent({ run: byRunId(runId), eventId: `e${i}` }).catch((err: unknown) => {
          // An event after the terminate finds the run ended; anything else is a failure.
          if (err instanceof DexError && err.code === "FAILED_PRECONDITION") return undefined;
          throw err;
        }),
      );
    const results = await Promise.allSettled([
      ...toTerminate.flatMap((runId) => [...events(runId), h.client.terminateRun({ run: byRunId(runId), reason: "race" })]),
      ...toCancel.flatMap((runId) => [...events(runId), h.client.cancelRun({ run: byRunId(runId), reason: "race" })]),
    ]);
    polling = false;
    await Promise.all(pollers);
    expect(results.filter((r) => r.status === "rejected")).toEqual([]);

    for (const runId of toTerminate) {
      expect(await pendingRows(runId)).toEqual({ workflow_tasks: 0, activity_tasks: 0, inbox: 0, timers: 0 });
      const token = claimedTokens.get(runId);
      if (token) await rejectsWith(h.worker.completeWorkflowTask({ taskToken: token, commands: [] }), "NOT_FOUND");
    }
    for (const runId of toCancel) {
      const d = await h.client.describeRun({ run: byRunId(runId) });
      expect(d.waitingReason).toMatch(/cancellation requested/);
      const inbox = (await inboxEvents(runId)).map((a) => a.case);
      expect(inbox.filter((c) => c === "cancelRequested")).toHaveLength(1);
      expect(inbox.filter((c) => c === "externalEventReceived")).toHaveLength(8);
      expect((await pendingRows(runId)).workflow_tasks).toBe(1);
    }
  });
});

/**
 * Inputs a caller was told were delivered (SendEvent, CancelRun, a parent's
 * cancellation) are never dropped: not when a child is started and cancelled
 * by one completion, not across continue-as-new, and not when the run's
 * final task was in flight as they arrived (that completion is refused with
 * ABORTED and the task handed out again). Real server, real Postgres.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { HistoryEventSchema, RunStatus } from "@dex/proto";
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
  startHarness,
  startWith,
  uniqueId,
  rejectsWith,
  startChild,
  type Harness,
} from "./helpers.js";



const cancelChild = (seq: number) => ({ command: { case: "requestCancelChildRun" as const, value: { seq } } });
const continueAsNew = (input: unknown) => ({ command: { case: "continueAsNew" as const, value: { input: json(input) } } });

describe("no lost inputs", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  async function inboxKinds(runId: string): Promise<string[]> {
    const rows = await h.sql<{ event: Buffer }[]>`select event from dex.inbox where run_id = ${runId} order by id`;
    return rows.map((r) => fromBinary(HistoryEventSchema, r.event).attributes.case ?? "?");
  }

  async function runRow(runId: string) {
    const [row] = await h.sql<{ status: string; cancel_requested_at: Date | null; cancel_reason: string | null; parent_run_id: string | null }[]>`
      select status, cancel_requested_at, cancel_reason, parent_run_id from dex.runs where id = ${runId}`;
    return row!;
  }

  /** Server connections of this test's database that wait for a lock. */
  async function lockWaiters(): Promise<number> {
    const [row] = await h.sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and application_name like 'dex-server %' and wait_event_type = 'Lock'`;
    return row!.n;
  }

  async function taskRow(runId: string) {
    const [row] = await h.sql<{ attempt: number; leased: boolean; visible: boolean }[]>`
      select attempt, lease_id is not null as leased, visible_at <= now() as visible
      from dex.workflow_tasks where run_id = ${runId}`;
    return row;
  }

  describe("a child started and cancel-requested by one completion", () => {
    it("is created with the cancellation request, in its inbox, with a workflow task", async () => {
      const childInstance = uniqueId("child-cancelled-at-birth");
      // What the SDK sends when a cancellation reaches the block that starts a child.
      const parentId = await startWith(h, [startChild(1, childInstance), cancelChild(1)]);
      const child = await h.client.describeRun({ run: byInstance(childInstance) });
      const childId = child.info!.runId;
      expect(child.info?.parentRunId).toBe(parentId);
      const row = await runRow(childId);
      expect(row.cancel_requested_at).not.toBeNull();
      expect(row.cancel_reason).toContain(`cancellation requested by parent run ${parentId}`);
      expect(await inboxKinds(childId)).toEqual(["cancelRequested"]);
      expect(await taskRow(childId)).toMatchObject({ leased: false, visible: true });

      const task = await pollWorkflowTaskOf(h, childId);
      expect(kinds(task.history)).toEqual(["runStarted"]);
      expect(kinds(task.newEvents)).toEqual(["cancelRequested"]);
      expect(await h.client.cancelRun({ run: byRunId(childId) })).toMatchObject({ alreadyRequested: true });
    });
  });

  describe("continue-as-new", () => {
    it("hands a CancelRun that arrived while the task ran to the new run, marked as requested", async () => {
      const instanceId = uniqueId("can-cancel");
      const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId });
      const task = await pollWorkflowTaskOf(h, runId); // in flight
      await h.client.cancelRun({ run: byRunId(runId), reason: "stop the loop" });
      await h.client.sendEvent({ run: byRunId(runId), eventId: "also-late", payload: json(1) });
      await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNew({ round: 2 })] });

      const old = await runRow(runId);
      expect(old.status).toBe("CONTINUED_AS_NEW");
      expect(await inboxKinds(runId)).toEqual([]);
      const next = await h.client.describeRun({ run: byInstance(instanceId) });
      const nextId = next.info!.runId;
      expect(nextId).not.toBe(runId);
      const row = await runRow(nextId);
      expect(row.cancel_requested_at?.getTime()).toBe(old.cancel_requested_at?.getTime());
      expect(row.cancel_reason).toBe("stop the loop");
      expect(next.waitingReason).toMatch(/cancellation requested .*stop the loop/);
      expect(await inboxKinds(nextId)).toEqual(["cancelRequested", "externalEventReceived"]);

      const first = await pollWorkflowTaskOf(h, nextId);
      expect(kinds(first.history)).toEqual(["runStarted"]);
      expect(kinds(first.newEvents)).toEqual(["cancelRequested", "externalEventReceived"]);
      expect(await h.client.cancelRun({ run: byRunId(nextId) })).toMatchObject({ alreadyRequested: true });
    });

    it("does not carry over a cancellation the old run's code saw and continued past (cancel_request_delivered)", async () => {
      const instanceId = uniqueId("can-seen");
      const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId });
      await h.client.cancelRun({ run: byRunId(runId), reason: "seen" });
      const task = await pollWorkflowTaskOf(h, runId);
      expect(kinds(task.newEvents)).toEqual(["cancelRequested"]);
      const continued = continueAsNew(2);
      await h.worker.completeWorkflowTask({
        taskToken: task.taskToken,
        commands: [{ command: { case: "continueAsNew", value: { ...continued.command.value, cancelRequestDelivered: true } } }],
      });

      const history = await h.client.getRunHistory({ run: byRunId(runId) });
      expect(kinds(history.events)).toEqual(["runStarted", "cancelRequested", "workflowTaskCompleted", "runContinuedAsNew"]);
      const nextId = (await h.client.describeRun({ run: byInstance(instanceId) })).info!.runId;
      expect((await runRow(nextId)).cancel_requested_at).toBeNull();
      expect(await inboxKinds(nextId)).toEqual([]);
      expect(await h.client.cancelRun({ run: byRunId(nextId) })).toMatchObject({ alreadyRequested: false });
    });

    it.each([
      ["its parent is terminated (parent-close policy CANCEL)", "terminate"],
      ["its parent requests its cancellation", "request_cancel_child_run"],
    ] as const)("hands a child's cancellation to its next run when %s while the child's task runs", async (_, how) => {
      const childInstance = uniqueId(`can-child-${how}`);
      const parentId = await startWith(h, [startChild(1, childInstance)]);
      const childId = (await h.client.describeRun({ run: byInstance(childInstance) })).info!.runId;
      const childTask = await pollWorkflowTaskOf(h, childId); // in flight
      if (how === "terminate") {
        await h.client.terminateRun({ run: byRunId(parentId), reason: "stop all" });
      } else {
        // The parent's next task (it must have one: give it an event) asks for the child's cancellation.
        await h.client.sendEvent({ run: byRunId(parentId), eventId: "cancel-the-child" });
        const parentTask = await pollWorkflowTaskOf(h, parentId);
        await h.worker.completeWorkflowTask({ taskToken: parentTask.taskToken, commands: [cancelChild(1)] });
      }
      expect(await inboxKinds(childId)).toEqual(["cancelRequested"]);
      await h.worker.completeWorkflowTask({ taskToken: childTask.taskToken, commands: [continueAsNew("again")] });

      const next = await h.client.describeRun({ run: byInstance(childInstance) });
      const nextId = next.info!.runId;
      expect(nextId).not.toBe(childId);
      const row = await runRow(nextId);
      expect(row.parent_run_id).toBe(parentId);
      expect(row.cancel_requested_at).not.toBeNull();
      expect(row.cancel_reason).toBe((await runRow(childId)).cancel_reason);
      const task = await pollWorkflowTaskOf(h, nextId);
      expect(kinds(task.newEvents)).toEqual(["cancelRequested"]);
    });
  });

  describe("a completion that would end the run while new inputs wait", () => {
    it("is refused with ABORTED, writes nothing, and the task comes back at once with the event", async () => {
      const runId = await startWith(h, [scheduleActivity(1, "a")]);
      const activity = await pollActivityOf(h, runId, 1);
      await h.worker.completeActivityTask({ taskToken: activity.taskToken, result: json("done") });
      const task = await pollWorkflowTaskOf(h, runId); // in flight with activity_completed
      expect(kinds(task.newEvents)).toEqual(["activityCompleted"]);
      const before = await h.client.getRunHistory({ run: byRunId(runId) });
      const sent = await h.client.sendEvent({ run: byRunId(runId), eventId: "late", payload: json("hello") });
      expect(sent.duplicate).toBe(false);

      await rejectsWith(
        h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("finished")] }),
        "ABORTED",
        new RegExp(`run ${runId} received new events while this workflow task ran; the task is handed out again with them`),
      );
      expect((await h.client.getRunHistory({ run: byRunId(runId) })).events).toEqual(before.events);
      expect((await runRow(runId)).status).toBe("RUNNING");
      expect(await inboxKinds(runId)).toEqual(["activityCompleted", "externalEventReceived"]);
      // Available again at once, the attempt not counted, no failure recorded.
      expect(await taskRow(runId)).toEqual({ attempt: task.attempt - 1, leased: false, visible: true });
      expect((await h.client.describeRun({ run: byRunId(runId) })).pendingWorkflowTask?.lastFailure).toBeUndefined();
      // The refused token is spent.
      await rejectsWith(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("again")] }), "NOT_FOUND");

      const again = await pollWorkflowTaskOf(h, runId);
      expect(again.attempt).toBe(task.attempt);
      expect(kinds(again.newEvents)).toEqual(["activityCompleted", "externalEventReceived"]);
      await h.worker.completeWorkflowTask({ taskToken: again.taskToken, commands: [completeRun("finished")] });
      expect((await h.client.getRunResult({ run: byRunId(runId) })).status).toBe(RunStatus.COMPLETED);
      expect(kinds((await h.client.getRunHistory({ run: byRunId(runId), afterSequence: before.historyLength })).events)).toEqual([
        "activityCompleted",
        "externalEventReceived",
        "workflowTaskCompleted",
        "runCompleted",
      ]);
    });

    it("is refused when the event arrives while an ending child's completion waits for its parent's row", async () => {
      // The completion's transaction began before the event was stamped: "unseen" must not be judged by now().
      const childInstance = uniqueId("abort-child");
      const parentId = await startWith(h, [startChild(1, childInstance)]);
      const childId = (await h.client.describeRun({ run: byInstance(childInstance) })).info!.runId;
      const task = await pollWorkflowTaskOf(h, childId);
      let completing: Promise<unknown> | undefined;
      await h.sql.begin(async (tx) => {
        await tx`select 1 from dex.runs where id = ${parentId} for no key update`;
        completing = h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("done")] }).catch((e: unknown) => e);
        await waitFor(async () => (await lockWaiters()) === 1, { message: "the child's completion to wait for the parent's row" });
        await h.client.sendEvent({ run: byRunId(childId), eventId: "late" });
      });
      expect(await completing).toMatchObject({ code: "ABORTED" });
      const again = await pollWorkflowTaskOf(h, childId);
      expect(kinds(again.newEvents)).toEqual(["externalEventReceived"]);
    });

    it.each([
      ["fail_run", { command: { case: "failRun" as const, value: { failure: { message: "gave up" } } } }],
      ["cancel_run", { command: { case: "cancelRun" as const, value: {} } }],
    ])("refuses %s while a cancellation request waits unseen", async (_, terminal) => {
      const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("abort-cancel") });
      const task = await pollWorkflowTaskOf(h, runId);
      await h.client.cancelRun({ run: byRunId(runId), reason: "late cancel" });
      await rejectsWith(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [terminal] }), "ABORTED");
      const again = await pollWorkflowTaskOf(h, runId);
      expect(kinds(again.newEvents)).toEqual(["cancelRequested"]);
      await h.worker.completeWorkflowTask({ taskToken: again.taskToken, commands: [terminal] });
      const history = await h.client.getRunHistory({ run: byRunId(runId) });
      expect(kinds(history.events).slice(0, 2)).toEqual(["runStarted", "cancelRequested"]);
    });

    it("does not refuse a completion that keeps the run open, or one whose late inputs are its own commands' results", async () => {
      const runId = await startWith(h, [scheduleActivity(1, "a")]);
      await h.client.sendEvent({ run: byRunId(runId), eventId: "wake" });
      const task = await pollWorkflowTaskOf(h, runId);
      // A result of the run's own activity arrives while the task runs: ending the run may drop it.
      const activity = await pollActivityOf(h, runId, 1);
      await h.worker.completeActivityTask({ taskToken: activity.taskToken, result: json("ignored") });
      await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("early")] });
      expect((await h.client.getRunResult({ run: byRunId(runId) })).status).toBe(RunStatus.COMPLETED);

      // An event during a task that keeps the run open waits for the next task, as always.
      const open = await startWith(h, [scheduleActivity(1, "a")]);
      await h.client.sendEvent({ run: byRunId(open), eventId: "first" });
      const first = await pollWorkflowTaskOf(h, open);
      await h.client.sendEvent({ run: byRunId(open), eventId: "second" });
      await h.worker.completeWorkflowTask({ taskToken: first.taskToken, commands: [] });
      const second = await pollWorkflowTaskOf(h, open);
      expect(kinds(second.newEvents)).toEqual(["externalEventReceived"]);
    });
  });
});

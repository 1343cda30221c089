/** SendEvent, SendEventWithStart and what DescribeRun shows of a waiting run, against a real server and database. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InstanceIdReusePolicy, ParentClosePolicy, RunStatus } from "@dex/proto";
import {
  byInstance,
  byRunId,
  completeRun,
  fromJson,
  json,
  kinds,
  pollWorkflowTaskOf,
  startHarness,
  startWith,
  uniqueId,
  rejectsWith,
  unknownRun,
  type Harness,
} from "./helpers.js";



function waitForEvent(seq: number, eventId: string, timeoutSeconds?: number) {
  return {
    command: {
      case: "waitForEvent" as const,
      value: { seq, eventId, timeout: timeoutSeconds === undefined ? undefined : { seconds: BigInt(timeoutSeconds) } },
    },
  };
}

describe("external events", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  async function inboxKinds(runId: string): Promise<string[]> {
    const rows = await h.sql<{ kind: string }[]>`select kind from dex.inbox where run_id = ${runId} order by id`;
    return rows.map((r) => r.kind);
  }

  async function countRows(table: "workflow_tasks" | "timers" | "inbox", runId: string): Promise<number> {
    const [row] = await h.sql<{ n: number }[]>`select count(*)::int as n from ${h.sql("dex." + table)} where run_id = ${runId}`;
    return row!.n;
  }

  it("delivers an event once: to the inbox with a workflow task, then into history; repeats answer duplicate", async () => {
    const runId = await startWith(h, [waitForEvent(1, "approval", 3600)]);
    expect(await countRows("workflow_tasks", runId)).toBe(0);
    expect(await countRows("timers", runId)).toBe(1);

    const sent = await h.client.sendEvent({ run: byRunId(runId), eventId: "approval", payload: json({ ok: true }) });
    expect(sent).toMatchObject({ runId, duplicate: false });
    expect(await inboxKinds(runId)).toEqual(["external_event_received"]);
    expect(await countRows("workflow_tasks", runId)).toBe(1);

    // Still in the inbox: a duplicate, and nothing is added.
    const again = await h.client.sendEvent({ run: byRunId(runId), eventId: "approval", payload: json({ ok: false }) });
    expect(again).toMatchObject({ runId, duplicate: true });
    expect(await inboxKinds(runId)).toEqual(["external_event_received"]);

    const task = await pollWorkflowTaskOf(h, runId);
    expect(kinds(task.newEvents)).toEqual(["externalEventReceived"]);
    const received = task.newEvents[0]!.attributes;
    expect(received.case === "externalEventReceived" && received.value.eventId).toBe("approval");
    expect(received.case === "externalEventReceived" && fromJson(received.value.payload)).toEqual({ ok: true });
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [] });

    // In history now, and the id is still a duplicate. The wait's time-out stays (one name, many
    // events: only the workflow code knows which wait an event satisfied; decision 0022).
    expect(await countRows("timers", runId)).toBe(1);
    const before = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(kinds(before.events)).toEqual([
      "runStarted",
      "workflowTaskCompleted",
      "eventWaitStarted",
      "externalEventReceived",
      "workflowTaskCompleted",
    ]);
    const third = await h.client.sendEvent({ run: byRunId(runId), eventId: "approval" });
    expect(third).toMatchObject({ runId, duplicate: true });
    expect(await inboxKinds(runId)).toEqual([]);
    expect(await countRows("workflow_tasks", runId)).toBe(0);
    expect((await h.client.getRunHistory({ run: byRunId(runId) })).events).toEqual(before.events);
  });

  it("DescribeRun drops a wait whose time-out reached history (its 'timer:<seq>' key names the wait's 'seq:<seq>')", async () => {
    const runId = await startWith(h, [waitForEvent(1, "never", 0), waitForEvent(2, "later")]);
    const task = await pollWorkflowTaskOf(h, runId);
    expect(kinds(task.newEvents)).toEqual(["eventWaitTimedOut"]);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [] });
    const d = await h.client.describeRun({ run: byRunId(runId) });
    expect(d.pendingEventWaits.map((w) => ({ seq: w.seq, eventId: w.eventId }))).toEqual([{ seq: 2, eventId: "later" }]);
  });

  it("a zero timeout times out at once: a timer due at task time, not a wait without end", async () => {
    const runId = await startWith(h, [waitForEvent(1, "never", 0)]);
    const history = await h.client.getRunHistory({ run: byRunId(runId) });
    const [marker, started] = history.events.slice(1).map((e) => e.attributes);
    expect(marker?.case).toBe("workflowTaskCompleted");
    expect(started?.case === "eventWaitStarted" && started.value.timeoutTime).toEqual(history.events[1]!.time);
    const task = await pollWorkflowTaskOf(h, runId);
    expect(kinds(task.newEvents)).toEqual(["eventWaitTimedOut"]);
    expect(task.newEvents[0]!.attributes).toMatchObject({ value: { seq: 1 } });
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("timed out")] });
  });

  it("sends by instance id to the open run, and an event during a task in flight waits for the next task", async () => {
    const instanceId = uniqueId("by-instance");
    const runId = await startWith(h, [waitForEvent(1, "a")], { instanceId });
    await h.client.sendEvent({ run: byInstance(instanceId), eventId: "a" });
    const first = await pollWorkflowTaskOf(h, runId);
    expect(kinds(first.newEvents)).toEqual(["externalEventReceived"]);

    // The task is leased: the next event is not added to it, and no second task appears.
    const sent = await h.client.sendEvent({ run: byInstance(instanceId), eventId: "b", payload: json(2) });
    expect(sent).toMatchObject({ runId, duplicate: false });
    expect(await countRows("workflow_tasks", runId)).toBe(1);
    await h.worker.completeWorkflowTask({ taskToken: first.taskToken, commands: [waitForEvent(2, "b")] });

    const second = await pollWorkflowTaskOf(h, runId);
    expect(kinds(second.newEvents)).toEqual(["externalEventReceived"]);
    const b = second.newEvents[0]!.attributes;
    expect(b.case === "externalEventReceived" && b.value.eventId).toBe("b");
    await h.worker.completeWorkflowTask({ taskToken: second.taskToken, commands: [completeRun("done")] });
    expect((await h.client.getRunResult({ run: byRunId(runId) })).status).toBe(RunStatus.COMPLETED);
  });

  it("answers NOT_FOUND for an unknown run and FAILED_PRECONDITION for an ended one, writing nothing", async () => {
    await rejectsWith(h.client.sendEvent({ run: unknownRun, eventId: "x" }), "NOT_FOUND", /not found/);
    await rejectsWith(h.client.sendEvent({ run: byInstance(uniqueId("nobody")), eventId: "x" }), "NOT_FOUND", /nobody/);

    const instanceId = uniqueId("ended");
    const runId = await startWith(h, [completeRun(1)], { instanceId });
    await rejectsWith(h.client.sendEvent({ run: byRunId(runId), eventId: "late" }), "FAILED_PRECONDITION", /COMPLETED/);
    await rejectsWith(h.client.sendEvent({ run: byInstance(instanceId), eventId: "late" }), "FAILED_PRECONDITION", /ended/);
    expect(await inboxKinds(runId)).toEqual([]);
    expect(await countRows("workflow_tasks", runId)).toBe(0);
  });

  it("rejects invalid SendEvent and SendEventWithStart requests with INVALID_ARGUMENT naming the field", async () => {
    const runId = await startWith(h, [waitForEvent(1, "a")]);
    const run = byRunId(runId);
    await rejectsWith(h.client.sendEvent({ eventId: "a" }), "INVALID_ARGUMENT", /run is required/);
    await rejectsWith(h.client.sendEvent({ run: byRunId("nope"), eventId: "a" }), "INVALID_ARGUMENT", /run\.run_id .* is not a run id/);
    await rejectsWith(h.client.sendEvent({ run: byInstance(""), eventId: "a" }), "INVALID_ARGUMENT", /run\.instance_id is required/);
    await rejectsWith(h.client.sendEvent({ run, eventId: "" }), "INVALID_ARGUMENT", /event_id is required/);
    await rejectsWith(h.client.sendEvent({ run, eventId: "x".repeat(256) }), "INVALID_ARGUMENT", /event_id is too long/);
    await rejectsWith(h.client.sendEvent({ run, eventId: "a\u0000b" }), "INVALID_ARGUMENT", /event_id must not contain NUL/);

    const start = { workflowName: "wf", instanceId: uniqueId("sws-invalid") };
    await rejectsWith(h.client.sendEventWithStart({ eventId: "a" }), "INVALID_ARGUMENT", /start is required/);
    await rejectsWith(h.client.sendEventWithStart({ start, eventId: "" }), "INVALID_ARGUMENT", /event_id is required/);
    await rejectsWith(h.client.sendEventWithStart({ start: { ...start, workflowName: "" }, eventId: "a" }), "INVALID_ARGUMENT", /start\.workflow_name is required/);
    await rejectsWith(h.client.sendEventWithStart({ start: { ...start, instanceId: "" }, eventId: "a" }), "INVALID_ARGUMENT", /start\.instance_id is required/);
    await rejectsWith(h.client.sendEventWithStart({ start: { ...start, taskQueue: "bad name!" }, eventId: "a" }), "INVALID_ARGUMENT", /start\.task_queue/);
    await rejectsWith(h.client.sendEventWithStart({ start: { ...start, priority: 101 }, eventId: "a" }), "INVALID_ARGUMENT", /start\.priority/);
    await rejectsWith(h.client.sendEventWithStart({ start: { ...start, labels: { "": "v" } }, eventId: "a" }), "INVALID_ARGUMENT", /start\.labels/);
    await rejectsWith(h.client.sendEventWithStart({ start: { ...start, reusePolicy: 9 as never }, eventId: "a" }), "INVALID_ARGUMENT", /start\.reuse_policy/);
    await rejectsWith(h.client.sendEventWithStart({ start: { ...start, conflictPolicy: 9 as never }, eventId: "a" }), "INVALID_ARGUMENT", /start\.conflict_policy/);
    await rejectsWith(h.client.sendEventWithStart({ start: { ...start, requestId: "x".repeat(256) }, eventId: "a" }), "INVALID_ARGUMENT", /start\.request_id/);
    await rejectsWith(h.client.sendEventWithStart({ start: { ...start, taskQueue: "missing" }, eventId: "a" }), "NOT_FOUND", /missing.*does not exist/);

    // None of them wrote anything.
    expect(await inboxKinds(runId)).toEqual([]);
    const [{ n } = { n: -1 }] = await h.sql<{ n: number }[]>`select count(*)::int as n from dex.runs where instance_id = ${start.instanceId}`;
    expect(n).toBe(0);
  });

  it("SendEventWithStart starts a run with the event, then delivers to the open run; duplicates change nothing", async () => {
    const instanceId = uniqueId("sws");
    const start = { workflowName: "wf", instanceId, input: json({ n: 1 }), labels: { team: "t" }, priority: 70 };
    const first = await h.client.sendEventWithStart({ start, eventId: "e1", payload: json(1) });
    expect(first).toMatchObject({ started: true, duplicate: false });
    const described = await h.client.describeRun({ run: byRunId(first.runId) });
    expect(described.info).toMatchObject({ instanceId, workflowName: "wf", priority: 70, labels: { team: "t" }, status: RunStatus.CREATED });
    expect(fromJson(described.input)).toEqual({ n: 1 });

    const second = await h.client.sendEventWithStart({ start, eventId: "e2", payload: json(2) });
    expect(second).toEqual(expect.objectContaining({ runId: first.runId, started: false, duplicate: false }));
    const dup = await h.client.sendEventWithStart({ start, eventId: "e1", payload: json(3) });
    expect(dup).toEqual(expect.objectContaining({ runId: first.runId, started: false, duplicate: true }));

    const task = await pollWorkflowTaskOf(h, first.runId);
    expect(kinds(task.history)).toEqual(["runStarted"]);
    expect(task.newEvents.map((e) => (e.attributes.case === "externalEventReceived" ? fromJson(e.attributes.value.payload) : e.attributes.case))).toEqual([1, 2]);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("done")] });

    // The run ended: the next call starts a new run (reuse policy ALLOW), unless the policy forbids it.
    await rejectsWith(
      h.client.sendEventWithStart({ start: { ...start, reusePolicy: InstanceIdReusePolicy.REJECT }, eventId: "e3" }),
      "ALREADY_EXISTS",
      new RegExp(first.runId),
    );
    const third = await h.client.sendEventWithStart({ start, eventId: "e1" });
    expect(third).toMatchObject({ started: true, duplicate: false });
    expect(third.runId).not.toBe(first.runId);
  });

  it("SendEventWithStart retried with the request id of a run that ended answers duplicate for its event", async () => {
    const instanceId = uniqueId("sws-retry");
    const start = { workflowName: "wf", instanceId, requestId: "req-1", reusePolicy: InstanceIdReusePolicy.REJECT };
    const first = await h.client.sendEventWithStart({ start, eventId: "only" });
    const task = await pollWorkflowTaskOf(h, first.runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun(1)] });
    const retried = await h.client.sendEventWithStart({ start, eventId: "only" });
    expect(retried).toMatchObject({ runId: first.runId, started: false, duplicate: true });
    await rejectsWith(h.client.sendEventWithStart({ start, eventId: "other" }), "FAILED_PRECONDITION", /ended/);
  });

  it("50 concurrent SendEventWithStart calls for one instance id create one run and deliver every event once, while a worker claims", async () => {
    const instanceId = uniqueId("sws-race");
    const ids = Array.from({ length: 50 }, (_, i) => `e${i}`);
    // A worker polls throughout: its claim of the new run's task races with the deliveries' run locks.
    let polling = true;
    const claimed: Array<Awaited<ReturnType<Harness["worker"]["pollWorkflowTasks"]>>["tasks"][number]> = [];
    const poller = (async () => {
      while (polling && claimed.length === 0) {
        const { tasks } = await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "racer", maxTasks: 1, maxWait: { seconds: 1n } });
        claimed.push(...tasks);
      }
    })();
    const results = await Promise.all(
      ids.map((eventId, i) =>
        h.client.sendEventWithStart({ start: { workflowName: "wf", instanceId }, eventId, payload: json(i) }),
      ),
    );
    polling = false;
    await poller;
    const runId = results[0]!.runId;
    expect(new Set(results.map((r) => r.runId))).toEqual(new Set([runId]));
    expect(results.filter((r) => r.started)).toHaveLength(1);
    expect(results.every((r) => !r.duplicate)).toBe(true);
    const runs = await h.client.listRuns({ instanceId });
    expect(runs.runs.map((r) => r.runId)).toEqual([runId]);

    // Every event exactly once: handed out to the claimed task or still waiting in the inbox.
    const [row] = await h.sql<{ n: number; distinct_keys: number }[]>`
      select count(*)::int as n, count(distinct dedup_key)::int as distinct_keys from dex.inbox where run_id = ${runId}`;
    expect(row).toEqual({ n: 50, distinct_keys: 50 });
    // Drain the run: all 50 reach history, each once.
    for (let i = 0; i < 5; i++) {
      const task = claimed.shift() ?? (await pollWorkflowTaskOf(h, runId, "racer"));
      await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [] });
      if ((await countRows("inbox", runId)) === 0) break;
    }
    const history = await h.client.getRunHistory({ run: byRunId(runId) });
    const received = history.events.flatMap((e) => (e.attributes.case === "externalEventReceived" ? [e.attributes.value.eventId] : []));
    expect(received.sort()).toEqual([...ids].sort());
  });

  it("50 concurrent SendEventWithStart calls with one event id deliver it once", async () => {
    const instanceId = uniqueId("sws-same");
    const results = await Promise.all(
      Array.from({ length: 50 }, () => h.client.sendEventWithStart({ start: { workflowName: "wf", instanceId }, eventId: "same" })),
    );
    expect(new Set(results.map((r) => r.runId)).size).toBe(1);
    expect(results.filter((r) => r.started)).toHaveLength(1);
    expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(await inboxKinds(results[0]!.runId)).toEqual(["external_event_received"]);
  });

  it("DescribeRun shows pending timers, event waits and child runs, and drops them as they resolve", async () => {
    const childInstance = uniqueId("child");
    const runId = await startWith(h, [
      { command: { case: "startTimer", value: { seq: 1, duration: { seconds: 3600n } } } },
      waitForEvent(2, "a", 1800),
      waitForEvent(3, "b"),
      {
        command: {
          case: "startChildRun",
          value: { seq: 4, workflowName: "child-wf", instanceId: childInstance, parentClosePolicy: ParentClosePolicy.ABANDON },
        },
      },
    ]);
    const d = await h.client.describeRun({ run: byRunId(runId) });
    expect(d.pendingTimers.map((t) => t.seq)).toEqual([1]);
    const startedAt = d.pendingTimers[0]!.fireTime!;
    expect(Number(startedAt.seconds) * 1000 - Date.now()).toBeGreaterThan(3500_000);
    expect(d.pendingEventWaits.map((w) => ({ seq: w.seq, eventId: w.eventId, timeout: w.timeoutTime !== undefined }))).toEqual([
      { seq: 2, eventId: "a", timeout: true },
      { seq: 3, eventId: "b", timeout: false },
    ]);
    const child = await h.client.describeRun({ run: byInstance(childInstance) });
    expect(d.pendingChildRuns).toEqual([
      expect.objectContaining({ seq: 4, instanceId: childInstance, runId: child.info!.runId, workflowName: "child-wf" }),
    ]);
    expect(d.waitingReason).toMatch(/events "a", "b"/);
    expect(d.waitingReason).toMatch(/1 timer/);
    expect(d.waitingReason).toMatch(/1 child run/);

    // The event arrives and the workflow sees it: that wait is gone; the child ends: it is gone.
    await h.client.sendEvent({ run: byRunId(runId), eventId: "a" });
    const parentTask = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: parentTask.taskToken, commands: [] });
    const childTask = await pollWorkflowTaskOf(h, child.info!.runId);
    await h.worker.completeWorkflowTask({ taskToken: childTask.taskToken, commands: [completeRun("child done")] });
    const later = await h.client.describeRun({ run: byRunId(runId) });
    expect(later.pendingEventWaits.map((w) => w.eventId)).toEqual(["b"]);
    expect(later.pendingTimers.map((t) => t.seq)).toEqual([1]);
    expect(later.pendingChildRuns).toEqual([]);

    // An ended run has no pending timers or waits.
    const end = await pollWorkflowTaskOf(h, runId); // child_run_ended woke the parent
    await h.worker.completeWorkflowTask({ taskToken: end.taskToken, commands: [completeRun("parent done")] });
    const ended = await h.client.describeRun({ run: byRunId(runId) });
    expect(ended.info?.status).toBe(RunStatus.COMPLETED);
    expect(ended.pendingTimers).toEqual([]);
    expect(ended.pendingEventWaits).toEqual([]);
    expect(ended.waitingReason).toBe("");
  });
});

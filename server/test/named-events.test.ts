/**
 * Repeatable named events against a real server and database (decision 0022):
 * name and id, generated ids, dedup across a continue-as-new chain, the
 * carried events of continue_as_new, and what DescribeRun shows.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResetPointKind, type HistoryEvent } from "@dex/proto";
import {
  byInstance,
  byRunId,
  completeRun,
  fromJson,
  json,
  pollWorkflowTaskOf,
  rejectsWith,
  startHarness,
  startWith,
  uniqueId,
  type Harness,
} from "./helpers.js";

function waitFor(seq: number, eventName: string) {
  return { command: { case: "waitForEvent" as const, value: { seq, eventName } } };
}

function continueAsNew(carried: Array<{ eventId: string; eventName: string; payload?: ReturnType<typeof json> }> = []) {
  return { command: { case: "continueAsNew" as const, value: { input: json("next"), carriedEvents: carried } } };
}

/** name/id/payload of each external event, in order. */
function received(events: HistoryEvent[]): Array<[string, string, unknown]> {
  return events.flatMap((e) =>
    e.attributes.case === "externalEventReceived"
      ? [[e.attributes.value.eventName, e.attributes.value.eventId, fromJson(e.attributes.value.payload)] as [string, string, unknown]]
      : [],
  );
}

describe("named events", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("delivers many events of one name; an id dedups, no id means a generated one and no dedup, an id alone is the name too", async () => {
    const runId = await startWith(h, [waitFor(1, "add")]);
    const run = byRunId(runId);
    const a = await h.client.sendEvent({ run, eventName: "add", eventId: "i1", payload: json("apple") });
    const again = await h.client.sendEvent({ run, eventName: "add", eventId: "i1", payload: json("apple again") });
    const b = await h.client.sendEvent({ run, eventName: "add", payload: json("pear") });
    const c = await h.client.sendEvent({ run, eventName: "add", payload: json("pear") });
    const legacy = await h.client.sendEvent({ run, eventId: "approval", payload: json(true) });
    expect([a.duplicate, again.duplicate, b.duplicate, c.duplicate, legacy.duplicate]).toEqual([false, true, false, false, false]);
    expect(a.eventId).toBe("i1");
    expect(b.eventId).toMatch(/^[0-9a-f-]{36}$/);
    expect(c.eventId).not.toBe(b.eventId);

    const task = await pollWorkflowTaskOf(h, runId);
    expect(received(task.newEvents)).toEqual([
      ["add", "i1", "apple"],
      ["add", b.eventId, "pear"],
      ["add", c.eventId, "pear"],
      ["approval", "approval", true],
    ]);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("done")] });
  });

  it("rejects a send with neither id nor name, and bad names, naming the field", async () => {
    const runId = await startWith(h, [waitFor(1, "x")]);
    const run = byRunId(runId);
    await rejectsWith(h.client.sendEvent({ run }), "INVALID_ARGUMENT", /event_name or event_id is required/);
    await rejectsWith(h.client.sendEvent({ run, eventName: "a\nb" }), "INVALID_ARGUMENT", /event_name must not contain control characters/);
    await rejectsWith(h.client.sendEvent({ run, eventName: "x".repeat(256) }), "INVALID_ARGUMENT", /event_name is too long/);
    const start = { workflowName: "wf", instanceId: uniqueId("sws-bad") };
    await rejectsWith(h.client.sendEventWithStart({ start }), "INVALID_ARGUMENT", /event_name or event_id is required/);
  });

  it("an event id is a duplicate across the whole continue-as-new chain, and not for a new chain of the instance", async () => {
    const instanceId = uniqueId("chain");
    const first = await startWith(h, [waitFor(1, "add")], { instanceId });
    expect((await h.client.sendEvent({ run: byInstance(instanceId), eventName: "add", eventId: "x", payload: json(1) })).duplicate).toBe(false);
    const task = await pollWorkflowTaskOf(h, first);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNew()] });

    // A client retry by instance id now reaches the next run: still a duplicate, nothing delivered.
    const retry = await h.client.sendEvent({ run: byInstance(instanceId), eventName: "add", eventId: "x", payload: json(1) });
    expect(retry.duplicate).toBe(true);
    const second = retry.runId;
    expect(second).not.toBe(first);
    const fresh = await h.client.sendEvent({ run: byInstance(instanceId), eventName: "add", eventId: "y", payload: json(2) });
    expect(fresh).toMatchObject({ runId: second, duplicate: false });
    const next = await pollWorkflowTaskOf(h, second);
    expect(received(next.newEvents)).toEqual([["add", "y", 2]]);
    // One more continue-as-new: the chain's first run's id is still claimed two runs later.
    await h.worker.completeWorkflowTask({ taskToken: next.taskToken, commands: [continueAsNew()] });
    const third = await h.client.sendEvent({ run: byInstance(instanceId), eventName: "add", eventId: "x" });
    expect(third.duplicate).toBe(true);
    const thirdTask = await pollWorkflowTaskOf(h, third.runId);
    await h.worker.completeWorkflowTask({ taskToken: thirdTask.taskToken, commands: [completeRun("done")] });

    // A new chain of the instance (the old one ended) accepts the id again.
    const restarted = await h.client.sendEventWithStart({ start: { workflowName: "wf", instanceId }, eventName: "add", eventId: "x" });
    expect(restarted).toMatchObject({ started: true, duplicate: false });
  });

  it("an event id stays a duplicate after a reset: the new run joins the old run's chain", async () => {
    const instanceId = uniqueId("reset-chain");
    const first = await startWith(h, [waitFor(1, "add")], { instanceId });
    expect((await h.client.sendEvent({ run: byInstance(instanceId), eventName: "add", eventId: "x", payload: json(1) })).duplicate).toBe(false);
    const task = await pollWorkflowTaskOf(h, first);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNew()] });
    // The second run of the chain never saw "x" (neither in its history nor its inbox); reset it.
    const { continuedAsRunId: second } = await h.client.getRunResult({ run: byRunId(first) });
    const reset = await h.client.resetRun({ run: byRunId(second), to: ResetPointKind.FIRST_WORKFLOW_TASK });
    const retry = await h.client.sendEvent({ run: byInstance(instanceId), eventName: "add", eventId: "x", payload: json(1) });
    expect(retry).toMatchObject({ runId: reset.runId, duplicate: true });
  });

  it("continue_as_new puts the carried events first, then the events that arrived during the task, in order", async () => {
    const instanceId = uniqueId("carry");
    const first = await startWith(h, [waitFor(1, "add")], { instanceId });
    await h.client.sendEvent({ run: byRunId(first), eventName: "add", eventId: "a1", payload: json("apple") });
    await h.client.sendEvent({ run: byRunId(first), eventName: "add", eventId: "a2", payload: json("pear") });
    const task = await pollWorkflowTaskOf(h, first);
    // Sent while the task runs: the old run never sees it.
    await h.client.sendEvent({ run: byRunId(first), eventName: "add", eventId: "a3", payload: json("plum") });
    // The code consumed a1 and carries a2.
    await h.worker.completeWorkflowTask({
      taskToken: task.taskToken,
      commands: [continueAsNew([{ eventId: "a2", eventName: "add", payload: json("pear") }])],
    });
    const d = await h.client.describeRun({ run: byRunId(first) });
    const next = await pollWorkflowTaskOf(h, d.continuedAsRunId);
    expect(received(next.newEvents)).toEqual([
      ["add", "a2", "pear"],
      ["add", "a3", "plum"],
    ]);
    // The carried id stays claimed by the chain.
    expect((await h.client.sendEvent({ run: byInstance(instanceId), eventName: "add", eventId: "a2" })).duplicate).toBe(true);
    await h.worker.completeWorkflowTask({ taskToken: next.taskToken, commands: [completeRun("done")] });
  });

  it("refuses carried events with a repeated id or no name, writing nothing", async () => {
    const runId = await startWith(h, [waitFor(1, "add")]);
    await h.client.sendEvent({ run: byRunId(runId), eventName: "add", eventId: "z" });
    const task = await pollWorkflowTaskOf(h, runId);
    const twice = [
      { eventId: "z", eventName: "add" },
      { eventId: "z", eventName: "add" },
    ];
    await rejectsWith(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNew(twice)] }), "INVALID_ARGUMENT", /carried_events\[1\]\.event_id "z" appears twice/);
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNew([{ eventId: "z", eventName: "" }])] }),
      "INVALID_ARGUMENT",
      /carried_events\[0\]\.event_name is required/,
    );
    expect((await h.client.describeRun({ run: byRunId(runId) })).continuedAsRunId).toBe("");
  });

  it("DescribeRun shows the open waits by name (each event settles the oldest) and counts received events by name", async () => {
    const runId = await startWith(h, [waitFor(1, "add"), waitFor(2, "add"), waitFor(3, "checkout")]);
    await h.client.sendEvent({ run: byRunId(runId), eventName: "add", eventId: "i1" });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [] });
    await h.client.sendEvent({ run: byRunId(runId), eventName: "add", eventId: "i2" });
    await h.client.sendEvent({ run: byRunId(runId), eventName: "note", eventId: "n1" });
    const d = await h.client.describeRun({ run: byRunId(runId) });
    expect(d.pendingEventWaits.map((w) => [w.seq, w.eventName, w.eventId])).toEqual([
      [2, "add", "add"],
      [3, "checkout", "checkout"],
    ]);
    expect(d.receivedEvents.map((r) => [r.eventName, r.inHistory, r.inInbox])).toEqual([
      ["add", 1, 1],
      ["note", 0, 1],
    ]);
  });

  it("cancel_timer drops the time-out of an event wait (what the SDK sends once an event satisfied it), not other seqs", async () => {
    const timed = { command: { case: "waitForEvent" as const, value: { seq: 1, eventName: "x", timeout: { seconds: 3600n } } } };
    const runId = await startWith(h, [timed, { command: { case: "scheduleActivity" as const, value: { seq: 2, activityName: "a" } } }]);
    const timers = async () => (await h.sql<{ seq: number }[]>`select seq from dex.timers where run_id = ${runId}`).map((r) => r.seq);
    expect(await timers()).toEqual([1]);
    await h.client.sendEvent({ run: byRunId(runId), eventName: "x", eventId: "x1" });
    const task = await pollWorkflowTaskOf(h, runId);
    const cancel = (seq: number) => ({ command: { case: "cancelTimer" as const, value: { seq } } });
    await rejectsWith(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [cancel(2)] }), "INVALID_ARGUMENT", /names no timer_started/);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [cancel(1)] });
    expect(await timers()).toEqual([]);
    const history = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(history.events.at(-1)?.attributes).toMatchObject({ case: "timerCancelled", value: { seq: 1 } });
  });

  it("DescribeRun no longer shows a timed wait whose time-out the SDK dropped without an event (a cancelled scope)", async () => {
    const timed = (seq: number) => ({ command: { case: "waitForEvent" as const, value: { seq, eventName: "x", timeout: { seconds: 3600n } } } });
    const runId = await startWith(h, [timed(1), timed(2)]);
    await h.client.sendEvent({ run: byRunId(runId), eventName: "other", eventId: "o1" });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [{ command: { case: "cancelTimer" as const, value: { seq: 1 } } }] });
    const d = await h.client.describeRun({ run: byRunId(runId) });
    expect(d.pendingEventWaits.map((w) => [w.seq, w.eventName])).toEqual([[2, "x"]]);
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { byRunId, completeRun, fromJson, json, kinds, pollActivityOf, pollWorkflowTaskOf, scheduleActivity, startHarness, startWith, type Harness } from "./helpers.js";

describe("workflow task history: sticky workers and inputs arriving mid-task", () => {
  let h: Harness;
  beforeAll(async () => {
    // Another worker gets a run's next task only once sticky routing's fallback has passed
    // (sticky-routing.test.ts): a short one keeps the "another worker" case quick.
    h = await startHarness({ stickyFallbackMs: 100 });
  });
  afterAll(async () => {
    await h.close();
  });

  it("sends only new events to the worker that completed the previous task, the full history to another", async () => {
    const runId = await startWith(h, [scheduleActivity(1, "a"), scheduleActivity(2, "b")], { workerId: "sticky" });
    const a = await pollActivityOf(h, runId, 1);
    await h.worker.completeActivityTask({ taskToken: a.taskToken, result: json("A") });

    const same = await pollWorkflowTaskOf(h, runId, "sticky");
    expect(same.history).toEqual([]);
    expect(same.historyLength).toBe(4n);
    expect(kinds(same.newEvents)).toEqual(["activityCompleted"]);
    await h.worker.completeWorkflowTask({ taskToken: same.taskToken, commands: [] });

    const b = await pollActivityOf(h, runId, 2);
    await h.worker.completeActivityTask({ taskToken: b.taskToken, result: json("B") });
    const other = await pollWorkflowTaskOf(h, runId, "another-worker");
    expect(other.historyLength).toBe(6n);
    expect(kinds(other.history)).toEqual([
      "runStarted",
      "workflowTaskCompleted",
      "activityScheduled",
      "activityScheduled",
      "activityCompleted",
      "workflowTaskCompleted",
    ]);
    expect(other.history.map((e) => e.sequence)).toEqual([1n, 2n, 3n, 4n, 5n, 6n]);
    expect(kinds(other.newEvents)).toEqual(["activityCompleted"]);
    expect(other.newEvents[0]!.sequence).toBe(7n);
    await h.worker.completeWorkflowTask({ taskToken: other.taskToken, commands: [completeRun("done")] });
    const history = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(history.events).toHaveLength(9);
  });

  it("an activity result that arrives while the workflow task is in flight gets its own next task", async () => {
    const runId = await startWith(h, [scheduleActivity(1, "a"), scheduleActivity(2, "b")]);
    const a = await pollActivityOf(h, runId, 1);
    const b = await pollActivityOf(h, runId, 2);
    await h.worker.completeActivityTask({ taskToken: a.taskToken, result: json(1) });
    const task = await pollWorkflowTaskOf(h, runId);
    expect(kinds(task.newEvents)).toEqual(["activityCompleted"]);
    // b completes while the task is leased: its inbox row is not part of this task.
    await h.worker.completeActivityTask({ taskToken: b.taskToken, result: json(2) });
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [] });
    const next = await pollWorkflowTaskOf(h, runId);
    expect(kinds(next.newEvents)).toEqual(["activityCompleted"]);
    const attributes = next.newEvents[0]!.attributes;
    expect(attributes.case === "activityCompleted" && [attributes.value.seq, fromJson(attributes.value.result)]).toEqual([2, 2]);
    await h.worker.completeWorkflowTask({ taskToken: next.taskToken, commands: [completeRun(3)] });
  });

  it("several outcomes waiting together are handed out in one task, in arrival order", async () => {
    const runId = await startWith(h, [scheduleActivity(1, "a"), scheduleActivity(2, "b"), scheduleActivity(3, "c")]);
    for (const seq of [3, 1, 2]) {
      const t = await pollActivityOf(h, runId, seq);
      await h.worker.completeActivityTask({ taskToken: t.taskToken, result: json(seq) });
    }
    const task = await pollWorkflowTaskOf(h, runId);
    expect(task.newEvents.map((e) => (e.attributes.case === "activityCompleted" ? e.attributes.value.seq : 0))).toEqual([3, 1, 2]);
    expect(task.newEvents.map((e) => e.sequence)).toEqual([6n, 7n, 8n]);
    const done = await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("ok")] });
    expect(done.historyLength).toBe(10n);
    const history = await h.client.getRunHistory({ run: byRunId(runId), afterSequence: 5n, pageSize: 3 });
    expect(history.events.map((e) => e.sequence)).toEqual([6n, 7n, 8n]);
    expect(history.historyLength).toBe(10n);
  });
});

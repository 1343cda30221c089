/**
 * record_patch_marker (engine/command-patch.ts): recorded in order among the
 * task's other command events, changing nothing else about the run; a bad
 * patch id refuses the whole completion with a message naming the field, and
 * writes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "@dex/proto";
import { patchIds } from "./hostile-input-values.js";
import { byRunId, completeRun, kinds, pollWorkflowTaskOf, rejectsWith, scheduleActivity, startHarness, startWith, uniqueId, type Harness } from "./helpers.js";

const marker = (patchId: string, deprecated = false) => ({ command: { case: "recordPatchMarker" as const, value: { patchId, deprecated } } });

describe("record_patch_marker", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("records patch_marker_recorded in command order, with its id and deprecated flag", async () => {
    const runId = await startWith(h, [scheduleActivity(1, "reserve"), marker("fraud-check"), marker("v2.gift_note:1", true)]);
    const history = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(kinds(history.events)).toEqual(["runStarted", "workflowTaskCompleted", "activityScheduled", "patchMarkerRecorded", "patchMarkerRecorded"]);
    const recorded = history.events.flatMap((e) => (e.attributes.case === "patchMarkerRecorded" ? [e.attributes.value] : []));
    expect(recorded).toEqual([expect.objectContaining({ patchId: "fraud-check", deprecated: false }), expect.objectContaining({ patchId: "v2.gift_note:1", deprecated: true })]);
    const described = await h.client.describeRun({ run: byRunId(runId) });
    expect(described.info?.status).toBe(RunStatus.RUNNING);
  });

  it("may come with the terminal command", async () => {
    const runId = await startWith(h, [marker("p"), completeRun("done")]);
    const history = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(kinds(history.events).slice(-2)).toEqual(["patchMarkerRecorded", "runCompleted"]);
  });

  it.each([
    ["empty", "", /commands\[1\]\.record_patch_marker\.patch_id is required/],
    ["too long", "p".repeat(129), /commands\[1\]\.record_patch_marker\.patch_id is too long: 129 characters, at most 128/],
    ["a space", "fraud check", /patch_id "fraud check" is not a valid patch id: use only letters, digits/],
    ["a newline", "a\nb", /patch_id "a\\nb" is not a valid patch id/],
    ["non-ASCII", "frâud", /is not a valid patch id/],
    ["sql", "'; drop table dex.runs; --", /is not a valid patch id/],
  ])("refuses a patch id with %s and writes nothing", async (_what, patchId, message) => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("patch") });
    const task = await pollWorkflowTaskOf(h, runId);
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(1, "a"), marker(patchId)] }),
      "INVALID_ARGUMENT",
      message,
    );
    const history = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(kinds(history.events)).toEqual(["runStarted"]);
    // The task is still leased to the worker, which may complete it differently.
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [marker("p".repeat(128)), completeRun("ok")] });
    const after = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(kinds(after.events).slice(-2)).toEqual(["patchMarkerRecorded", "runCompleted"]);
  });

  // The random hostile-input test draws a marker only now and then: every value of its pool, here, each time.
  it.each(patchIds.map(([label, value, bad]) => [label, value as string, bad] as const))(
    "answers the hostile patch id %s: refused when bad, recorded otherwise",
    async (_label, patchId, bad) => {
      const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("hostile") });
      const task = await pollWorkflowTaskOf(h, runId);
      const completion = h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [marker(patchId)] });
      if (bad) await rejectsWith(completion, "INVALID_ARGUMENT", /record_patch_marker\.patch_id/);
      else await completion;
      const history = await h.client.getRunHistory({ run: byRunId(runId) });
      expect(kinds(history.events)).toEqual(bad ? ["runStarted"] : ["runStarted", "workflowTaskCompleted", "patchMarkerRecorded"]);
    },
  );
});

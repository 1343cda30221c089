/**
 * The server's side of updates (decision 0024), driven by hand over real gRPC against a real
 * database: the inbox request and its dedup, the resumable wait, what a completion may say about
 * updates (rejections, complete_update) and what it writes, and a wait resumed after a restart.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FailureSchema } from "@dex/proto";
import { create } from "@bufbuild/protobuf";
import { byRunId, completeRun, fromJson, json, kinds, pollWorkflowTaskOf, rejectsWith, serveDatabase, startWith, type Harness, startHarness, uniqueId, completeUpdate, inboxDedupKeys } from "./helpers.js";

const NOW = { seconds: 0n, nanos: 0 };

describe("updates on the server", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });


  it("stores the request once per update id, answers still_running at its deadline, then the recorded outcome", async () => {
    const runId = await startWith(h, []);
    const ask = () => h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "u1", args: json(1), wait: NOW });
    expect(await ask()).toMatchObject({ runId, stillRunning: true, outcome: { case: undefined } });
    expect(await ask()).toMatchObject({ stillRunning: true });
    expect(await inboxDedupKeys(h, runId)).toEqual(["update:u1"]);

    const task = await pollWorkflowTaskOf(h, runId);
    expect(task.newEvents.map((e) => e.attributes.case)).toEqual(["updateAccepted"]);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeUpdate("u1", { ok: 1 })] });
    const done = await ask();
    expect(done.outcome.case).toBe("result");
    expect(fromJson(done.outcome.value as never)).toEqual({ ok: 1 });
    const history = (await h.client.getRunHistory({ run: byRunId(runId) })).events;
    expect(kinds(history).slice(-3)).toEqual(["updateAccepted", "workflowTaskCompleted", "updateCompleted"]);
    // A repeat after completion adds nothing to the inbox.
    expect(await inboxDedupKeys(h, runId)).toEqual([]);
  });

  it("deletes a rejected update's inbox row instead of recording it, and keeps the rejection for every caller", async () => {
    const runId = await startWith(h, []);
    await h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "bad", wait: NOW });
    const task = await pollWorkflowTaskOf(h, runId);
    const failure = create(FailureSchema, { message: "quantity must be positive", type: "RangeError" });
    const before = (await h.client.getRunHistory({ run: byRunId(runId) })).events.length;
    const completed = await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [], rejectedUpdates: [{ updateId: "bad", failure }] });
    const history = (await h.client.getRunHistory({ run: byRunId(runId) })).events;
    expect(kinds(history.slice(before))).toEqual(["workflowTaskCompleted"]);
    expect(Number(completed.historyLength)).toBe(history.length);
    expect(await inboxDedupKeys(h, runId)).toEqual([]);
    const answer = await h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "bad", wait: NOW });
    expect(answer.outcome).toMatchObject({ case: "rejection", value: { message: "quantity must be positive", type: "RangeError" } });
    expect(await inboxDedupKeys(h, runId)).toEqual([]);
  });

  it("keeps a rejection when the same completion starts a child (the one-by-one path): no update_accepted, the caller hears the rejection", async () => {
    const runId = await startWith(h, []);
    await h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "bad", wait: NOW });
    const task = await pollWorkflowTaskOf(h, runId);
    const failure = create(FailureSchema, { message: "no children today" });
    const child = { command: { case: "startChildRun" as const, value: { seq: 1, workflowName: "child", instanceId: uniqueId("child") } } };
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [child], rejectedUpdates: [{ updateId: "bad", failure }] });
    const history = (await h.client.getRunHistory({ run: byRunId(runId) })).events;
    expect(kinds(history)).not.toContain("updateAccepted");
    expect(kinds(history)).toContain("childRunScheduled");
    expect(await inboxDedupKeys(h, runId)).not.toContain("update:bad");
    const answer = await h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "bad", wait: NOW });
    expect(answer.outcome).toMatchObject({ case: "rejection", value: { message: "no children today" } });
  });

  it("refuses, writing nothing, a rejection of an update not handed out and a complete_update of one never accepted or completed twice", async () => {
    const runId = await startWith(h, []);
    await h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "u", wait: NOW });
    let task = await pollWorkflowTaskOf(h, runId);
    const failure = create(FailureSchema, { message: "no" });
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [], rejectedUpdates: [{ updateId: "other", failure }] }),
      "INVALID_ARGUMENT",
      /rejected_updates names update "other", which was not handed out with this workflow task/,
    );
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeUpdate("never", 1)] }),
      "INVALID_ARGUMENT",
      /complete_update names update "never", which this run has not accepted/,
    );
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [], rejectedUpdates: [{ updateId: "u" }] }),
      "INVALID_ARGUMENT",
      /rejected_updates\[0\]\.failure is required/,
    );
    expect(await inboxDedupKeys(h, runId)).toEqual(["update:u"]);
    // Accepted and completed in one task; a second complete_update later is refused.
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeUpdate("u", 1)] });
    await h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "v", wait: NOW });
    task = await pollWorkflowTaskOf(h, runId);
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeUpdate("u", 2)] }),
      "INVALID_ARGUMENT",
      /update "u", which was completed already/,
    );
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeUpdate("v", 2), completeRun("end")] });
    const answer = await h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "u", wait: NOW });
    expect(fromJson(answer.outcome.value as never)).toBe(1);
  });

  it("answers a waiter whose run ends before the update completed, and refuses new updates to an ended run", async () => {
    const runId = await startWith(h, []);
    const waiting = h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "w", wait: { seconds: 30n } });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("bye")] });
    await rejectsWith(waiting, "FAILED_PRECONDITION", /ended \(COMPLETED\) before update "w" completed/);
    await rejectsWith(
      h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "x", wait: NOW }),
      "FAILED_PRECONDITION",
      /has already ended \(COMPLETED\); it cannot receive updates/,
    );
    await rejectsWith(h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "", wait: NOW }), "INVALID_ARGUMENT", /update_id is required/);
  });

  it("resumes a wait on another server (as after a restart): everything it needs is in the database", async () => {
    const runId = await startWith(h, []);
    await h.client.updateRun({ run: byRunId(runId), name: "add", updateId: "r", wait: NOW });
    // A second server on the same database, which never saw the first call: it holds nothing in memory for the update.
    const restarted = await serveDatabase(h.db);
    try {
      const waiting = restarted.client.updateRun({ run: byRunId(runId), name: "add", updateId: "r", wait: { seconds: 30n } });
      const task = await pollWorkflowTaskOf(restarted, runId);
      await restarted.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeUpdate("r", "after restart")] });
      const answer = await waiting;
      expect(fromJson(answer.outcome.value as never)).toBe("after restart");
    } finally {
      await restarted.close();
    }
  });
});

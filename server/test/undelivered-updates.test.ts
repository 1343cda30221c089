/**
 * Updates handed out with the workflow task in which the code continued as new, which the code
 * never saw (ContinueAsNewCommand.undelivered_update_ids, decision 0031): the server treats them as
 * unseen. Not written to the old run's history, moved to the new run's inbox with the inputs that
 * arrived meanwhile, their update-id claims re-pointed, a caller waiting on the old run follows
 * them; the field is validated (only updates of this task, named once). Driven by hand over real
 * gRPC against a real database.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { FailureSchema } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { byInstance, byRunId, fromJson, kinds, pollWorkflowTaskOf, rejectsWith, startWith, type Harness, startHarness, uniqueId, watchRunParking, completeUpdate, continueAsNewLeaving, updateClaimOf, inboxDedupKeys } from "./helpers.js";

const NOW = { seconds: 0n, nanos: 0 };

describe("updates the code never saw at continue-as-new", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  async function acceptedIn(runId: string): Promise<string[]> {
    const events = (await h.client.getRunHistory({ run: byRunId(runId) })).events;
    return events.flatMap((e) => (e.attributes.case === "updateAccepted" ? [e.attributes.value.updateId] : []));
  }

  it("moves them to the new run ahead of the updates that arrived meanwhile, re-points their claims, and a waiting caller follows", async () => {
    const instanceId = uniqueId("undelivered");
    const first = await startWith(h, [], { instanceId });
    expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "seen", wait: NOW })).toMatchObject({ stillRunning: true });
    expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "unseen", wait: NOW })).toMatchObject({ stillRunning: true });
    const task = await pollWorkflowTaskOf(h, first);
    expect(task.newEvents.map((e) => e.attributes.case)).toEqual(["updateAccepted", "updateAccepted"]);
    // Arrives while the task runs: unseen, moved as before this change.
    expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "late", wait: NOW })).toMatchObject({ stillRunning: true });

    const subscribed = watchRunParking();
    try {
      const waiting = h.client.updateRun({ run: byRunId(first), name: "add", updateId: "unseen", wait: { seconds: 60n } });
      await waitFor(async () => subscribed.parked(first) > 0, { message: "UpdateRun to wait on the first run" });
      const done = await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNewLeaving(["unseen"])] });

      const history = (await h.client.getRunHistory({ run: byRunId(first) })).events;
      expect(BigInt(history.length)).toBe(done.historyLength);
      expect(await acceptedIn(first)).toEqual(["seen"]);
      expect(kinds(history).slice(-3)).toEqual(["updateAccepted", "workflowTaskCompleted", "runContinuedAsNew"]);
      const next = (await h.client.describeRun({ run: byInstance(instanceId) })).info!.runId;
      expect(next).not.toBe(first);
      expect(await inboxDedupKeys(h, next)).toEqual(["update:unseen", "update:late"]);
      expect(await updateClaimOf(h, next, "unseen")).toBe(next);
      expect(await updateClaimOf(h, next, "seen")).toBe(first);

      // The new run handles it; the caller that waited on the old run hears the new run's answer.
      const t = await pollWorkflowTaskOf(h, next);
      const handed = t.newEvents.flatMap((e) => (e.attributes.case === "updateAccepted" ? [e.attributes.value.updateId] : []));
      expect(handed).toEqual(["unseen", "late"]);
      await h.worker.completeWorkflowTask({ taskToken: t.taskToken, commands: [completeUpdate("unseen", "applied"), completeUpdate("late", 2)] });
      const answer = await waiting;
      expect(answer.runId).toBe(next);
      expect(fromJson(answer.outcome.value as never)).toBe("applied");
    } finally {
      subscribed.restore();
    }
    // A retry through either run or the instance id is answered by the new run, once.
    for (const run of [byRunId(first), byInstance(instanceId)]) {
      const retry = await h.client.updateRun({ run, name: "add", updateId: "unseen", wait: NOW });
      expect(retry.runId).not.toBe(first);
      expect(fromJson(retry.outcome.value as never)).toBe("applied");
    }
    // The update the code saw stays the old run's: accepted, never completed.
    const seen = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "seen", wait: NOW });
    expect(seen).toMatchObject({ runId: first, outcome: { case: "failure", value: { type: "WorkflowContinuedAsNew" } } });
  });

  it("refuses, writing nothing, an id not handed out with the task, one rejected in the same completion, one completed by it, or one named twice", async () => {
    const instanceId = uniqueId("undelivered-invalid");
    const first = await startWith(h, [], { instanceId });
    await h.client.updateRun({ run: byRunId(first), name: "add", updateId: "u", wait: NOW });
    const task = await pollWorkflowTaskOf(h, first);
    // Not handed out with this task: arrived while it ran.
    await h.client.updateRun({ run: byRunId(first), name: "add", updateId: "meanwhile", wait: NOW });
    const field = /commands\[0\]\.continue_as_new\.undelivered_update_ids/;
    for (const id of ["never", "meanwhile"]) {
      const err = await rejectsWith(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNewLeaving([id])] }), "INVALID_ARGUMENT", field);
      expect(err.message).toContain(`names update "${id}", which was not handed out with this workflow task`);
    }
    await rejectsWith(
      h.worker.completeWorkflowTask({
        taskToken: task.taskToken,
        commands: [continueAsNewLeaving(["u"])],
        rejectedUpdates: [{ updateId: "u", failure: create(FailureSchema, { message: "no" }) }],
      }),
      "INVALID_ARGUMENT",
      /undelivered_update_ids\[0\] names update "u", which was not handed out with this workflow task \(or was rejected/,
    );
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeUpdate("u", 1), continueAsNewLeaving(["u"])] }),
      "INVALID_ARGUMENT",
      /undelivered_update_ids\[0\] names update "u", which a complete_update of this completion also answers/,
    );
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNewLeaving(["u", "u"])] }),
      "INVALID_ARGUMENT",
      /undelivered_update_ids\[1\] "u" appears twice/,
    );
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNewLeaving([""])] }),
      "INVALID_ARGUMENT",
      /undelivered_update_ids\[0\] is required/,
    );
    // Nothing was written: the run is open, its inbox and claims as they were, and the task still completes.
    expect(await inboxDedupKeys(h, first)).toEqual(["update:u", "update:meanwhile"]);
    expect(await updateClaimOf(h, first, "u")).toBe(first);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNewLeaving(["u"])] });
    const next = (await h.client.describeRun({ run: byInstance(instanceId) })).info!.runId;
    expect(await inboxDedupKeys(h, next)).toEqual(["update:u", "update:meanwhile"]);
    expect(await acceptedIn(first)).toEqual([]);
  });

  it("without the field (an older SDK) every handed-out update stays the old run's, as before", async () => {
    const instanceId = uniqueId("undelivered-old-sdk");
    const first = await startWith(h, [], { instanceId });
    await h.client.updateRun({ run: byRunId(first), name: "add", updateId: "x", wait: NOW });
    const task = await pollWorkflowTaskOf(h, first);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [continueAsNewLeaving([])] });
    const next = (await h.client.describeRun({ run: byInstance(instanceId) })).info!.runId;
    expect(await acceptedIn(first)).toEqual(["x"]);
    expect(await inboxDedupKeys(h, next)).toEqual([]);
    expect(await updateClaimOf(h, first, "x")).toBe(first);
  });
});

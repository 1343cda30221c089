/**
 * Update ids are claimed per chain (dex.update_ids, migration 0016, decision 0031): the claim must
 * name the run that answers the update. ResetRun puts its new run in the old run's chain, so it
 * re-points the claims of the updates the new run now holds (kept in its history or re-delivered
 * to its inbox; decision 0026). And claims a server before 0016 left wrong (its continue-as-new
 * dropped a waiting update; its retention deleted the run but not the claim) count as none, so a
 * retry reaches the chain's open run instead of a FAILED_PRECONDITION forever (docs/upgrades.md).
 * Driven by hand over real gRPC against a real database; the first two tests are review 1's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ResetPointKind } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { byInstance, byRunId, fromJson, json, pollWorkflowTaskOf, startWith, type Harness, startHarness, uniqueId, watchRunParking, completeUpdate, updateClaimOf, inboxDedupKeys } from "./helpers.js";

const NOW = { seconds: 0n, nanos: 0 };

describe("update-id claims", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });


  describe("ResetRun", () => {
    it("an update accepted before the reset point and completed by the reset run is answered through the instance id", async () => {
      const instanceId = uniqueId("reset-update");
      const first = await startWith(h, [], { instanceId });
      // U accepted by the first run; its handler has not finished.
      expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "u", wait: NOW })).toMatchObject({ stillRunning: true });
      const t2 = await pollWorkflowTaskOf(h, first);
      await h.worker.completeWorkflowTask({ taskToken: t2.taskToken, commands: [] });
      // One more workflow task, so LAST_WORKFLOW_TASK keeps update_accepted.
      await h.client.sendEvent({ run: byRunId(first), eventName: "poke", eventId: "p1", payload: json(1) });
      const t3 = await pollWorkflowTaskOf(h, first);
      await h.worker.completeWorkflowTask({ taskToken: t3.taskToken, commands: [] });

      const reset = await h.client.resetRun({ run: byRunId(first), to: ResetPointKind.LAST_WORKFLOW_TASK });
      const history = (await h.client.getRunHistory({ run: byRunId(reset.runId) })).events;
      expect(history.map((e) => e.attributes.case)).toContain("updateAccepted");
      expect(await updateClaimOf(h, reset.runId, "u")).toBe(reset.runId);
      // The reset run's code runs the handler again and finishes it.
      const t = await pollWorkflowTaskOf(h, reset.runId);
      await h.worker.completeWorkflowTask({ taskToken: t.taskToken, commands: [completeUpdate("u", { ok: 1 })] });

      const retry = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "u", wait: NOW });
      expect(retry.runId).toBe(reset.runId);
      expect(retry.outcome.case).toBe("result");
      expect(fromJson(retry.outcome.value as never)).toEqual({ ok: 1 });
    });

    it("an update waiting unseen in the inbox at a reset is re-delivered to the reset run, where a retry through the instance id finds it", async () => {
      const instanceId = uniqueId("reset-update-unseen");
      const first = await startWith(h, [], { instanceId });
      expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "v", wait: NOW })).toMatchObject({ stillRunning: true });
      // Reset before the update was handed out: terminating the old run empties its inbox.
      const reset = await h.client.resetRun({ run: byRunId(first), to: ResetPointKind.LAST_WORKFLOW_TASK });
      expect(reset.redeliveredEvents).toBe(0); // counts external events only
      expect(await inboxDedupKeys(h, reset.runId)).toEqual(["update:v"]);
      const retry = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "v", wait: NOW });
      expect(retry).toMatchObject({ runId: reset.runId, stillRunning: true });
      expect(await inboxDedupKeys(h, reset.runId)).toEqual(["update:v"]); // asked once
    });

    it("an update accepted after the reset point is re-delivered with the events, in arrival order, and a caller waiting on the old run follows it", async () => {
      const instanceId = uniqueId("reset-update-after");
      const first = await startWith(h, [], { instanceId });
      await h.client.sendEvent({ run: byRunId(first), eventName: "poke", eventId: "p1", payload: json(1) });
      expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "w", wait: NOW })).toMatchObject({ stillRunning: true });
      const t2 = await pollWorkflowTaskOf(h, first);
      expect(t2.newEvents.map((e) => e.attributes.case)).toEqual(["externalEventReceived", "updateAccepted"]);
      await h.worker.completeWorkflowTask({ taskToken: t2.taskToken, commands: [] });

      const subscribed = watchRunParking();
      try {
        const waiting = h.client.updateRun({ run: byRunId(first), name: "add", updateId: "w", wait: { seconds: 60n } });
        await waitFor(async () => subscribed.parked(first) > 0, { message: "UpdateRun to wait on the first run" });
        const reset = await h.client.resetRun({ run: byRunId(first), to: ResetPointKind.LAST_WORKFLOW_TASK });
        expect(reset.redeliveredEvents).toBe(1);
        expect(await inboxDedupKeys(h, reset.runId)).toEqual(["event:p1", "update:w"]);
        const t = await pollWorkflowTaskOf(h, reset.runId);
        await h.worker.completeWorkflowTask({ taskToken: t.taskToken, commands: [completeUpdate("w", "again")] });
        const answer = await waiting;
        expect(answer.runId).toBe(reset.runId);
        expect(fromJson(answer.outcome.value as never)).toBe("again");
      } finally {
        subscribed.restore();
      }
    });
  });

  describe("claims left by a server before migration 0016 (rolling upgrade)", () => {
    /**
     * A run that took update `updateId` under its claim, then continued as new the way a server
     * without 0016 does: it drops the update waiting unseen in the inbox and leaves the claim
     * naming the old run. Simulated on this server by deleting the update's inbox row by hand
     * just before the continue-as-new, so handOverInbox has nothing to move or re-point.
     */
    async function continuedByAnOldServer(instanceId: string, updateId: string): Promise<{ first: string; next: string }> {
      const first = await startWith(h, [], { instanceId });
      await h.client.sendEvent({ run: byRunId(first), eventName: "roll", eventId: "r1", payload: json(1) });
      const task = await pollWorkflowTaskOf(h, first);
      // Arrives while the task is in flight: unseen by the code that continues as new.
      expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId, wait: NOW })).toMatchObject({ runId: first, stillRunning: true });
      await h.sql`delete from dex.inbox where run_id = ${first} and dedup_key = ${`update:${updateId}`}`;
      await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [{ command: { case: "continueAsNew", value: { input: json(2) } } }] });
      const next = (await h.client.describeRun({ run: byInstance(instanceId) })).info!.runId;
      expect(next).not.toBe(first);
      expect(await updateClaimOf(h, next, updateId)).toBe(first); // the stale claim
      return { first, next };
    }

    it("a retry through the instance id of an update an old server dropped at continue-as-new is asked of the open run, once", async () => {
      const instanceId = uniqueId("old-can");
      const { next } = await continuedByAnOldServer(instanceId, "x");
      const retry = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "x", wait: NOW });
      expect(retry).toMatchObject({ runId: next, stillRunning: true });
      expect(await updateClaimOf(h, next, "x")).toBe(next);
      expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "x", wait: NOW })).toMatchObject({ runId: next, stillRunning: true });
      expect(await inboxDedupKeys(h, next)).toEqual(["update:x"]);
      const t = await pollWorkflowTaskOf(h, next);
      await h.worker.completeWorkflowTask({ taskToken: t.taskToken, commands: [completeUpdate("x", 7)] });
      const done = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "x", wait: NOW });
      expect(fromJson(done.outcome.value as never)).toBe(7);
    });

    it("a caller waiting on the run an old server continued as new asks the open run and gets its answer", async () => {
      const instanceId = uniqueId("old-can-wait");
      const subscribed = watchRunParking();
      try {
        // The claim is live while the first run is open: the waiter parks on it.
        const first = await startWith(h, [], { instanceId });
        await h.client.sendEvent({ run: byRunId(first), eventName: "roll", eventId: "r1", payload: json(1) });
        const task = await pollWorkflowTaskOf(h, first);
        const waiting = h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "y", wait: { seconds: 60n } });
        await waitFor(async () => subscribed.parked(first) > 0, { message: "UpdateRun to wait on the first run" });
        await h.sql`delete from dex.inbox where run_id = ${first} and dedup_key = 'update:y'`;
        await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [{ command: { case: "continueAsNew", value: { input: json(2) } } }] });
        const next = (await h.client.describeRun({ run: byInstance(instanceId) })).info!.runId;
        await waitFor(async () => (await inboxDedupKeys(h, next)).includes("update:y"), { message: "the waiter to ask the new run" });
        const t = await pollWorkflowTaskOf(h, next);
        await h.worker.completeWorkflowTask({ taskToken: t.taskToken, commands: [completeUpdate("y", "late")] });
        const answer = await waiting;
        expect(answer.runId).toBe(next);
        expect(fromJson(answer.outcome.value as never)).toBe("late");
      } finally {
        subscribed.restore();
      }
    });

    it("a claim naming a run that is gone (an old server's retention keeps claims) counts as none", async () => {
      const instanceId = uniqueId("orphan-claim");
      const first = await startWith(h, [], { instanceId });
      // The claim an old server's retention leaves behind: its run was deleted, the row was not.
      await h.sql`insert into dex.update_ids (chain_id, update_id, run_id) values (${first}, 'z', '0190a1b2-0000-7000-8000-00000000dead')`;
      const retry = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "z", wait: NOW });
      expect(retry).toMatchObject({ runId: first, stillRunning: true });
      expect(await updateClaimOf(h, first, "z")).toBe(first);
      expect(await inboxDedupKeys(h, first)).toEqual(["update:z"]);
    });

    it("a claim on a run that continued as new holding the update is not taken over: the answer stays the old run's", async () => {
      const instanceId = uniqueId("live-claim");
      const first = await startWith(h, [], { instanceId });
      expect(await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "k", wait: NOW })).toMatchObject({ stillRunning: true });
      const task = await pollWorkflowTaskOf(h, first);
      // Accepted with the continuing task and never completed: WorkflowContinuedAsNew (decision 0031).
      await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [{ command: { case: "continueAsNew", value: { input: json(2) } } }] });
      const retry = await h.client.updateRun({ run: byInstance(instanceId), name: "add", updateId: "k", wait: NOW });
      expect(retry.runId).toBe(first);
      expect(retry.outcome).toMatchObject({ case: "failure", value: { type: "WorkflowContinuedAsNew" } });
      expect(await updateClaimOf(h, first, "k")).toBe(first);
    });
  });
});

/**
 * The lock order of a workflow task completion (store/completion.ts lockRunAndTakeTask): one
 * statement locks the parent's run row before the run's own, as every path that locks both
 * does (ancestor first). Observed from outside: while the completion of a child that ends waits
 * for the child's row, it already holds the parent's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "@dex/proto";
import { waitFor } from "@dex/testing";
import {
  byInstance,
  byRunId,
  completeRun,
  holdRunLock,
  pollWorkflowTaskOf,
  serverLockWaiters,
  startChild,
  startHarness,
  startWith,
  uniqueId,
  type Harness,
} from "./helpers.js";

describe("workflow task completion locks", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("a child's ending completion holds its parent's row while it waits for its own", async () => {
    const childInstance = uniqueId("child");
    const parentId = await startWith(h, [startChild(1, childInstance)]);
    const child = await h.client.describeRun({ run: byInstance(childInstance) });
    const childId = child.info!.runId;
    const task = await pollWorkflowTaskOf(h, childId);

    const lock = await holdRunLock(h, childId);
    try {
      const completion = h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("done")] });
      await waitFor(async () => (await serverLockWaiters(h)) > 0, { message: "the completion to wait for the child's row" });
      // The parent's row is taken already: NOWAIT fails with lock_not_available.
      const probe = await h.sql
        .begin((tx) => tx`select 1 from dex.runs where id = ${parentId} for no key update nowait`)
        .then(
          () => "acquired",
          (err: { code?: string }) => err.code,
        );
      expect(probe).toBe("55P03");
      await lock.release();
      await completion;
    } finally {
      await lock.release();
    }
    expect((await h.client.getRunResult({ run: byRunId(childId) })).status).toBe(RunStatus.COMPLETED);
    const parentTask = await pollWorkflowTaskOf(h, parentId);
    expect(parentTask.newEvents.map((e) => e.attributes.case)).toContain("childRunEnded");
  });
});

/**
 * The lock order of a workflow task completion (store/completion.ts lockRunAndTakeTask): one
 * statement locks the parent's run row before the run's own, as every path that locks both
 * does (ancestor first). Observed from outside: while the completion of a child that ends waits
 * for the child's row, it already holds the parent's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "@dex/proto";
import { byInstance, byRunId, completeRun, pollWorkflowTaskOf, startChild, startHarness, startWith, uniqueId, type Harness } from "./helpers.js";

/** Polls a condition until it holds or the deadline passes. */
async function eventually(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

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

    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holder = h.sql.begin(async (tx) => {
      await tx`select 1 from dex.runs where id = ${childId} for no key update`;
      locked();
      await released;
    });
    await isLocked;
    try {
      const completion = h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("done")] });
      await eventually(async () => {
        const [row] = await h.sql<{ waiting: number }[]>`
          select count(*)::int as waiting from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock' and application_name = 'dex-server'`;
        return row!.waiting > 0;
      }, "the completion to wait for the child's row");
      // The parent's row is taken already: NOWAIT fails with lock_not_available.
      const probe = await h.sql
        .begin((tx) => tx`select 1 from dex.runs where id = ${parentId} for no key update nowait`)
        .then(
          () => "acquired",
          (err: { code?: string }) => err.code,
        );
      expect(probe).toBe("55P03");
      release();
      await holder;
      await completion;
    } finally {
      release();
      await holder;
    }
    expect((await h.client.getRunResult({ run: byRunId(childId) })).status).toBe(RunStatus.COMPLETED);
    const parentTask = await pollWorkflowTaskOf(h, parentId);
    expect(parentTask.newEvents.map((e) => e.attributes.case)).toContain("childRunEnded");
  });
});

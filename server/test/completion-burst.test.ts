/**
 * Regression (found by `pnpm chaos --scenario sigterm`, chaos/repro/completion-burst.ts):
 * on a server whose queue cache is cold, completions that schedule activities asked the
 * pool, from inside their transaction, whether the queue exists. A burst of them (more
 * than the pool's 10 connections) held every connection while waiting for another, and
 * the server stalled until Postgres killed the idle transactions 60 s later.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { DexError } from "@dex/proto";
import { json, serveDatabase, startHarness, uniqueId, type Harness } from "./helpers.js";

const BURST = 14;

describe("a burst of completions on a server with a cold queue cache", () => {
  let h: Harness;
  let cold: Harness;
  beforeAll(async () => {
    h = await startHarness();
    // Started after the queues exist and told to ensure none: nothing in its queue cache.
    cold = await serveDatabase(h.db, { ensureQueues: [] });
  });
  afterAll(async () => {
    await cold?.close();
    await h?.close();
  });

  it("completes them all, each scheduling an activity, without exhausting the pool", async () => {
    for (let i = 0; i < BURST; i++) await h.client.startWorkflow({ workflowName: "burst", instanceId: uniqueId("burst") });
    const tasks = [];
    while (tasks.length < BURST) {
      const polled = await cold.worker.pollWorkflowTasks({
        taskQueue: "default",
        workerId: "burst",
        maxTasks: BURST - tasks.length,
        maxWait: durationFromMs(5_000),
      });
      tasks.push(...polled.tasks);
    }
    // A stall ends in UNAVAILABLE when Postgres kills the idle transactions (60 s): the deadline fails it first.
    const answers = await Promise.all(
      tasks.map((task) =>
        cold.worker
          .completeWorkflowTask(
            {
              taskToken: task.taskToken,
              commands: [{ command: { case: "scheduleActivity", value: { seq: 1, activityName: "step", input: json(1) } } }],
            },
            { deadline: Date.now() + 30_000 },
          )
          .then(() => "OK", (err: unknown) => DexError.from(err).code),
      ),
    );
    expect(answers).toEqual(tasks.map(() => "OK"));
    const [{ count } = { count: -1 }] = await h.sql<{ count: number }[]>`
      select count(*)::int as count from dex.activity_tasks where activity_name = 'step'`;
    expect(count).toBe(BURST);
  }, 45_000);
});

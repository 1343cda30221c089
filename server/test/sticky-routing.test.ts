/**
 * Sticky routing: a run's next workflow task goes to the worker that completed
 * the previous one (it holds the run in its cache) while that worker polls,
 * and to any worker once the task has waited stickyFallbackMs, or at once when
 * it was handed out before and failed. Servers run WAKES_ONLY: no fallback
 * tick, so every answer below was caused by a wake-up the code sent on purpose
 * (the owner woken by name, the queue woken when the fallback passes).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FailureKind, RunStatus, WorkflowTaskFailedCause } from "@dex/proto";
import { waitFor } from "@dex/testing";
import {
  byRunId,
  completeRun,
  json,
  kinds,
  PARK,
  parkPoll,
  pollActivityOf,
  scheduleActivity,
  startHarness,
  startWith,
  WAKES_ONLY,
  watchParking,
  wokenBy,
  type Harness,
} from "./helpers.js";

type Task = Awaited<ReturnType<Harness["worker"]["pollWorkflowTasks"]>>["tasks"][number];

describe("sticky routing, the owner alive", () => {
  let h: Harness;
  let parking: ReturnType<typeof watchParking>;
  beforeAll(async () => {
    parking = watchParking();
    // A fallback no test waits out: any task another worker takes here was not left to the owner.
    h = await startHarness({ ...WAKES_ONLY, stickyFallbackMs: 600_000 });
  });
  afterAll(async () => {
    await h.close();
    parking.restore();
  });

  it("hands every next task of a run to the worker that holds it, while two workers poll the queue", async () => {
    const workers = ["w-a", "w-b"] as const;
    const RUNS = 6;
    const STEPS = 8;
    // The first task of each run goes to a chosen worker; from then on only routing decides.
    const owner = new Map<string, string>();
    for (let i = 0; i < RUNS; i++) {
      const workerId = workers[i % 2]!;
      owner.set(await startWith(h, [scheduleActivity(1, "step")], { workerId }), workerId);
    }
    const takenBy = new Map<string, Array<{ workerId: string; task: Task }>>();
    const steps = new Map<string, number>();
    let stopping = false;

    async function workflowLoop(workerId: string): Promise<void> {
      while (!stopping) {
        const { tasks } = await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId, maxTasks: 1, maxWait: { seconds: 1n } });
        for (const task of tasks) {
          takenBy.set(task.runId, [...(takenBy.get(task.runId) ?? []), { workerId, task }]);
          const step = (steps.get(task.runId) ?? 1) + 1;
          steps.set(task.runId, step);
          const commands = step <= STEPS ? [scheduleActivity(step, "step")] : [completeRun(step)];
          await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands });
        }
      }
    }
    async function activityLoop(): Promise<void> {
      while (!stopping) {
        const { tasks } = await h.worker.pollActivityTasks({ taskQueue: "default", workerId: "acts", maxTasks: 10, maxWait: { seconds: 1n } });
        for (const task of tasks) await h.worker.completeActivityTask({ taskToken: task.taskToken, result: json(task.seq) });
      }
    }
    const loops = [...workers.map(workflowLoop), activityLoop()].map((loop) =>
      loop.catch((err: unknown) => {
        stopping = true;
        throw err;
      }),
    );
    try {
      for (const runId of owner.keys()) {
        await waitFor(async () => stopping || (await h.client.describeRun({ run: byRunId(runId) })).info?.status === RunStatus.COMPLETED, {
          message: `run ${runId} to complete`,
          timeoutMs: 60_000,
        });
      }
    } finally {
      stopping = true;
      await Promise.all(loops);
    }

    for (const [runId, workerId] of owner) {
      const taken = takenBy.get(runId) ?? [];
      // STEPS activities, each followed by one workflow task (two outcomes never share one here).
      expect(taken).toHaveLength(STEPS);
      expect(taken.map((t) => t.workerId), `run ${runId}`).toEqual(taken.map(() => workerId));
      // Each went to the cache: no history, only the new event.
      for (const { task } of taken) {
        expect(task.history).toEqual([]);
        expect(kinds(task.newEvents)).toEqual(["activityCompleted"]);
      }
    }
  });

  it("a queue wake that reaches another worker's parked poll is passed to the owner by name", async () => {
    const runId = await startWith(h, [scheduleActivity(1, "a")], { workerId: "owner" });
    // "other" parks first, so the activity result's queue wake (oldest poll first) reaches it, not the owner.
    const cancelOther = new AbortController();
    const other = (await parkPoll(parking, "workflow", "default", () =>
      h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "other", maxTasks: 10, maxWait: PARK }, { signal: cancelOther.signal }),
    )).answer;
    const mine = (await parkPoll(parking, "workflow", "default", () =>
      h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "owner", maxTasks: 10, maxWait: PARK }),
    )).answer;
    const a = await pollActivityOf(h, runId, 1);
    await h.worker.completeActivityTask({ taskToken: a.taskToken, result: json("A") });
    const { tasks } = await wokenBy(mine, "the owner's wake by name from the poll that left its task alone");
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
    expect(tasks[0]!.history).toEqual([]);
    await h.worker.completeWorkflowTask({ taskToken: tasks[0]!.taskToken, commands: [completeRun("done")] });
    // Still parked, having claimed nothing (a claim would have answered it): end it.
    cancelOther.abort();
    await expect(other).rejects.toMatchObject({ code: "CANCELLED" });
  });

  it("a task the owner failed goes to any worker at once, with the full history", async () => {
    const runId = await startWith(h, [scheduleActivity(1, "a")], { workerId: "failing" });
    const a = await pollActivityOf(h, runId, 1);
    await h.worker.completeActivityTask({ taskToken: a.taskToken, result: json("A") });
    const mine = await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "failing", maxTasks: 10, maxWait: { seconds: 1n } });
    expect(mine.tasks.map((t) => t.runId)).toEqual([runId]);
    await h.worker.failWorkflowTask({
      taskToken: mine.tasks[0]!.taskToken,
      failure: { message: "boom", kind: FailureKind.APPLICATION },
      cause: WorkflowTaskFailedCause.UNSPECIFIED,
    });
    // After the back-off (its wake is the retry timer); the fallback (600 s) plays no part.
    const retried = await waitFor(
      async () => (await h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "rescuer", maxTasks: 10, maxWait: { seconds: 5n } })).tasks[0],
      { message: "the failed task to reach another worker" },
    );
    expect(retried.runId).toBe(runId);
    expect(retried.attempt).toBe(2);
    expect(kinds(retried.history)).toEqual(["runStarted", "workflowTaskCompleted", "activityScheduled"]);
    await h.worker.completeWorkflowTask({ taskToken: retried.taskToken, commands: [completeRun("done")] });
  });
});

describe("sticky routing, the owner gone", () => {
  const FALLBACK_MS = 1_000;
  let h: Harness;
  let parking: ReturnType<typeof watchParking>;
  beforeAll(async () => {
    parking = watchParking();
    h = await startHarness({ ...WAKES_ONLY, stickyFallbackMs: FALLBACK_MS, workflowTaskRetry: { initialMs: 50, maxMs: 50 } });
  });
  afterAll(async () => {
    await h.close();
    parking.restore();
  });

  it("a parked poll of another worker gets the task once it has waited the fallback", async () => {
    const runId = await startWith(h, [scheduleActivity(1, "a")], { workerId: "gone" });
    // "gone" never polls again. The other worker parks first, then the activity result makes the task.
    const poll = (
      await parkPoll(parking, "workflow", "default", () =>
        h.worker.pollWorkflowTasks({ taskQueue: "default", workerId: "heir", maxTasks: 10, maxWait: PARK }),
      )
    ).answer;
    const a = await pollActivityOf(h, runId, 1);
    await h.worker.completeActivityTask({ taskToken: a.taskToken, result: json("A") });
    // No tick and a 60 s poll: only the wake armed for the end of the fallback can answer it.
    const { tasks } = await wokenBy(poll, "the wake at the end of the sticky fallback");
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
    const [task] = tasks;
    expect(task!.attempt).toBe(1);
    // Not the cache's task: the full history comes along.
    expect(kinds(task!.history)).toEqual(["runStarted", "workflowTaskCompleted", "activityScheduled"]);
    // What happened, on the database's clock: the claim came no sooner than the fallback after the input.
    const arrived = task!.newEvents[0]!.time!;
    const claimed = task!.taskTime!;
    const waitedMs = Number(claimed.seconds - arrived.seconds) * 1000 + (claimed.nanos - arrived.nanos) / 1e6;
    expect(waitedMs).toBeGreaterThanOrEqual(FALLBACK_MS);
    await h.worker.completeWorkflowTask({ taskToken: task!.taskToken, commands: [completeRun("done")] });
  });
});

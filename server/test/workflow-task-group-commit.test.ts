/**
 * Workflow task completions share transactions (engine/workflow-task-completions.ts): completions
 * that arrive while a batch is written go together in the next one. Every answer must be the one the
 * one-by-one path gives, and a refused completion writes nothing while the others of its batch commit.
 *
 * To form a batch on purpose, a "blocker" completion is sent first while the test holds its workflow
 * task's row lock: the blocker is the batch in flight (a batch of one skips a busy run row but waits for
 * a task row, whose real holders - claims, failures - are short), and what is sent then waits for the
 * next batch (waitingForBatch says when all of it arrived).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { waitingForBatch } from "../src/engine/group-commit.js";
import {
  byRunId,
  completeRun,
  groupCommitStats,
  holdLock,
  holdRunLock,
  json,
  pollActivityOf,
  pollWorkflowTaskOf,
  scheduleActivity,
  serverLockWaiters,
  startHarness,
  uniqueId,
  type Harness,
  type HeldLock,
} from "./helpers.js";

const OP = "workflow_task_completion";
const HISTORY_LIMIT = 20;

type Commands = Parameters<Harness["worker"]["completeWorkflowTask"]>[0]["commands"];

async function code(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "OK",
    (err: unknown) => (err instanceof DexError ? err.code : `not a DexError: ${String(err)}`),
  );
}

/** A started run and the token of its first workflow task. */
async function startRun(h: Harness): Promise<{ runId: string; token: Uint8Array }> {
  const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("wfgroup") });
  const task = await pollWorkflowTaskOf(h, runId);
  return { runId, token: task.taskToken };
}

/** The run's history as kinds in sequence order; throws on a gap. */
async function history(h: Harness, runId: string): Promise<string[]> {
  const rows = await h.sql<{ sequence: number; kind: string }[]>`
    select sequence, kind from dex.history_events where run_id = ${runId} order by sequence`;
  rows.forEach((r, i) => expect(r.sequence, `run ${runId}: sequence ${i + 1}`).toBe(i + 1));
  return rows.map((r) => r.kind);
}

/** The lease of the run's workflow task (undefined: no task row). */
async function taskLease(h: Harness, runId: string): Promise<string | undefined> {
  const [row] = await h.sql<{ lease: string }[]>`
    select lease_id::text || '/' || lock_version as lease from dex.workflow_tasks where run_id = ${runId}`;
  return row?.lease;
}

/** Holds the run's workflow task row (FOR NO KEY UPDATE) in a transaction of the test's own until release(). */
function holdTaskRowLock(h: Harness, runId: string): Promise<HeldLock> {
  return holdLock(h, (tx) => tx`select 1 from dex.workflow_tasks where run_id = ${runId} for no key update`);
}

/**
 * Holds `blocker`'s task row, sends its completion (the batch in flight, waiting for the lock), then
 * sends `calls` and waits until all of them wait for the next batch. Returns the answers' codes (the
 * blocker's first) once `release` ran; `release` gets the pending answers.
 */
async function inOneBatch(
  h: Harness,
  blocker: { runId: string; token: Uint8Array },
  calls: Array<() => Promise<unknown>>,
  release: (held: HeldLock) => Promise<void> = (held) => held.release(),
): Promise<string[]> {
  const held = await holdTaskRowLock(h, blocker.runId);
  const first = code(h.worker.completeWorkflowTask({ taskToken: blocker.token, commands: [scheduleActivity(1, "a")] }));
  await waitFor(async () => (await serverLockWaiters(h)) >= 1, { message: "the blocker's completion waits for its task row" });
  const waitingBefore = waitingForBatch(OP);
  const rest = calls.map((call) => code(call()));
  await waitFor(() => waitingForBatch(OP) >= waitingBefore + calls.length, { message: "every completion waits for the next batch" });
  await release(held);
  return Promise.all([first, ...rest]);
}

describe("workflow task completions share transactions", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ metricsPort: 0, limits: { maxHistoryEvents: HISTORY_LIMIT } });
  });
  afterAll(async () => {
    await h.close();
  });

  it("concurrent completions are batched and each run's history is exactly right", async () => {
    const runs = await Promise.all(Array.from({ length: 30 }, () => startRun(h)));
    const before = await groupCommitStats(h, OP);
    const codes = await Promise.all(
      runs.map(({ token }) => code(h.worker.completeWorkflowTask({ taskToken: token, commands: [scheduleActivity(1, "a")] }))),
    );
    expect(codes).toEqual(runs.map(() => "OK"));
    const scheduled = await groupCommitStats(h, OP);
    expect(scheduled.sum - before.sum).toBe(runs.length);
    expect(scheduled.count - before.count, "fewer batches than completions").toBeLessThan(runs.length);

    // Each run: its activity task; the result brings the next workflow task, which ends the run.
    for (const { runId } of runs) {
      const activity = await pollActivityOf(h, runId, 1);
      await h.worker.completeActivityTask({ taskToken: activity.taskToken, result: json(runId) });
    }
    const next = await Promise.all(runs.map(({ runId }) => pollWorkflowTaskOf(h, runId)));
    const ended = await Promise.all(
      next.map((task, i) => code(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun(i)] }))),
    );
    expect(ended).toEqual(runs.map(() => "OK"));
    const after = await groupCommitStats(h, OP);
    expect(after.sum - scheduled.sum).toBe(runs.length);
    expect(after.count - scheduled.count, "fewer batches than completions").toBeLessThan(runs.length);

    for (const { runId } of runs) {
      expect(await history(h, runId)).toEqual([
        "run_started",
        "workflow_task_completed",
        "activity_scheduled",
        "activity_completed",
        "workflow_task_completed",
        "run_completed",
      ]);
      const [row] = await h.sql<{ status: string; result: Buffer }[]>`select status, result from dex.runs where id = ${runId}`;
      expect(row!.status).toBe("COMPLETED");
      expect(await taskLease(h, runId)).toBeUndefined();
    }
  });

  it("a batch mixing valid and refused completions answers each as alone and writes nothing for the refused", async () => {
    const blocker = await startRun(h);
    const valid = await Promise.all([startRun(h), startRun(h)]);
    const invalid = await startRun(h);
    const atLimit = await startRun(h);
    const unseen = await startRun(h);
    // A stale token: its task completed, and the run's next task is leased under a new one.
    const stale = await startRun(h);
    await h.worker.completeWorkflowTask({ taskToken: stale.token, commands: [scheduleActivity(1, "a")] });
    const activity = await pollActivityOf(h, stale.runId, 1);
    await h.worker.completeActivityTask({ taskToken: activity.taskToken, result: json(1) });
    const staleNext = await pollWorkflowTaskOf(h, stale.runId);
    // Unseen inputs: an event arrives while the task that would end the run runs.
    await h.client.sendEvent({ run: byRunId(unseen.runId), eventId: "late", payload: json("late") });
    // Seen inputs: the event came with the task, so ending the run is accepted.
    const { runId: seenRunId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("wfgroup") });
    await h.client.sendEvent({ run: byRunId(seenRunId), eventId: "early", payload: json("early") });
    const seenTask = await pollWorkflowTaskOf(h, seenRunId);
    expect(seenTask.newEvents.map((e) => e.attributes.case)).toContain("externalEventReceived");

    const refused = [invalid, atLimit, unseen, stale];
    const historiesBefore = await Promise.all(refused.map(({ runId }) => history(h, runId)));
    const leasesBefore = await Promise.all(refused.map(({ runId }) => taskLease(h, runId)));
    const before = await groupCommitStats(h, OP);

    const complete = (token: Uint8Array, commands: Commands) => () => h.worker.completeWorkflowTask({ taskToken: token, commands });
    const codes = await inOneBatch(h, blocker, [
      complete(valid[0]!.token, [scheduleActivity(1, "a")]),
      complete(invalid.token, [scheduleActivity(1, "a"), scheduleActivity(1, "b")]),
      complete(atLimit.token, Array.from({ length: HISTORY_LIMIT }, (_, i) => scheduleActivity(i + 1, "a"))),
      complete(unseen.token, [completeRun("done")]),
      complete(stale.token, [completeRun("stale")]),
      complete(valid[1]!.token, [completeRun("at once")]),
      complete(seenTask.taskToken, [completeRun("seen")]),
    ]);
    expect(codes).toEqual(["OK", "OK", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "ABORTED", "NOT_FOUND", "OK", "OK"]);
    const after = await groupCommitStats(h, OP);
    // The blocker alone, then the three valid completions in one batch.
    expect(after.count - before.count).toBe(2);
    expect(after.sum - before.sum).toBe(4);
    expect(await history(h, seenRunId)).toEqual(["run_started", "external_event_received", "workflow_task_completed", "run_completed"]);

    expect(await history(h, valid[0]!.runId)).toEqual(["run_started", "workflow_task_completed", "activity_scheduled"]);
    expect(await history(h, valid[1]!.runId)).toEqual(["run_started", "workflow_task_completed", "run_completed"]);
    // Nothing written for the refused: histories as they were; the invalid, the history-limit and
    // the stale completion left the task under its lease; unseen inputs handed the task back.
    expect(await Promise.all(refused.map(({ runId }) => history(h, runId)))).toEqual(historiesBefore);
    const leasesAfter = await Promise.all(refused.map(({ runId }) => taskLease(h, runId)));
    expect([leasesAfter[0], leasesAfter[1], leasesAfter[3]]).toEqual([leasesBefore[0], leasesBefore[1], leasesBefore[3]]);
    expect(leasesAfter[2]).toBeDefined();
    expect(leasesAfter[2]).not.toEqual(leasesBefore[2]);

    // Their tasks are still theirs: the same tokens complete with valid commands.
    await h.worker.completeWorkflowTask({ taskToken: invalid.token, commands: [scheduleActivity(1, "a")] });
    await h.worker.completeWorkflowTask({ taskToken: atLimit.token, commands: [completeRun("ended at the limit")] });
    await h.worker.completeWorkflowTask({ taskToken: staleNext.taskToken, commands: [completeRun("fresh")] });
    const again = await pollWorkflowTaskOf(h, unseen.runId);
    expect(again.newEvents.map((e) => e.attributes.case)).toContain("externalEventReceived");
  });

  it("a completion whose run another transaction holds goes the one-by-one path and waits for it", async () => {
    const blocker = await startRun(h);
    const busy = await startRun(h);
    const free = await startRun(h);
    const before = await groupCommitStats(h, OP);
    const codes = await inOneBatch(
      h,
      blocker,
      [
        () => h.worker.completeWorkflowTask({ taskToken: busy.token, commands: [scheduleActivity(1, "a")] }),
        () => h.worker.completeWorkflowTask({ taskToken: free.token, commands: [scheduleActivity(1, "a")] }),
      ],
      async (blockerHeld) => {
        const busyHeld = await holdRunLock(h, busy.runId);
        await blockerHeld.release();
        // The batch skipped the busy run; its completion now waits for the row, alone.
        await waitFor(async () => (await history(h, free.runId)).length === 3, { message: "the free run's completion committed" });
        await waitFor(async () => (await serverLockWaiters(h)) >= 1, { message: "the busy run's completion waits for its row" });
        expect(await history(h, busy.runId)).toEqual(["run_started"]);
        await busyHeld.release();
      },
    );
    expect(codes).toEqual(["OK", "OK", "OK"]);
    expect(await history(h, busy.runId)).toEqual(["run_started", "workflow_task_completed", "activity_scheduled"]);
    expect(await history(h, free.runId)).toEqual(["run_started", "workflow_task_completed", "activity_scheduled"]);
    const after = await groupCommitStats(h, OP);
    // The blocker alone, then a batch that wrote only the free run.
    expect(after.count - before.count).toBe(2);
    expect(after.sum - before.sum).toBe(2);
  });

  it("a lone completion whose run is busy waits outside the group commit, so later completions do not queue behind it", async () => {
    const busy = await startRun(h);
    const other = await startRun(h);
    const held = await holdRunLock(h, busy.runId);
    const busyDone = code(h.worker.completeWorkflowTask({ taskToken: busy.token, commands: [scheduleActivity(1, "a")] }));
    await waitFor(async () => (await serverLockWaiters(h)) >= 1, { message: "the busy run's completion waits for its row" });
    // Still waiting: the other completion gets its own batch and commits.
    expect(await code(h.worker.completeWorkflowTask({ taskToken: other.token, commands: [scheduleActivity(1, "a")] }))).toBe("OK");
    expect(await history(h, busy.runId)).toEqual(["run_started"]);
    await held.release();
    expect(await busyDone).toBe("OK");
    expect(await history(h, busy.runId)).toEqual(["run_started", "workflow_task_completed", "activity_scheduled"]);
  });

  it("a batch whose statement fails as a whole (a reused seq) is retried one by one with the right answers", async () => {
    const blocker = await startRun(h);
    const valid = await startRun(h);
    // A run whose next task schedules seq 1 again: only the history's dedup index refuses it.
    const reused = await startRun(h);
    await h.worker.completeWorkflowTask({ taskToken: reused.token, commands: [scheduleActivity(1, "a")] });
    const activity = await pollActivityOf(h, reused.runId, 1);
    await h.worker.completeActivityTask({ taskToken: activity.taskToken, result: json(1) });
    const next = await pollWorkflowTaskOf(h, reused.runId);
    const historyBefore = await history(h, reused.runId);
    const leaseBefore = await taskLease(h, reused.runId);
    const before = await groupCommitStats(h, OP);

    let message = "";
    const codes = await inOneBatch(h, blocker, [
      () =>
        h.worker.completeWorkflowTask({ taskToken: next.taskToken, commands: [scheduleActivity(1, "again")] }).catch((err: unknown) => {
          message = err instanceof Error ? err.message : String(err);
          throw err;
        }),
      () => h.worker.completeWorkflowTask({ taskToken: valid.token, commands: [scheduleActivity(1, "a")] }),
    ]);
    expect(codes).toEqual(["OK", "INVALID_ARGUMENT", "OK"]);
    expect(message).toMatch(/seq 1 is already used/);
    expect(await history(h, valid.runId)).toEqual(["run_started", "workflow_task_completed", "activity_scheduled"]);
    expect(await history(h, reused.runId)).toEqual(historyBefore);
    expect(await taskLease(h, reused.runId)).toBe(leaseBefore);
    const after = await groupCommitStats(h, OP);
    // Only the blocker was written by the group commit: the failed batch wrote nothing, and its
    // completions were answered by the one-by-one path.
    expect(after.count - before.count).toBe(1);
    expect(after.sum - before.sum).toBe(1);
  });
});

/**
 * The batch's lock statement (store/completion.ts lockRunsAndTasks + deleteTakenTasks) and the one-by-one
 * path's (lockRunAndTakeTask) are two SQL forms of one fence; the writes after them are one function
 * (writeCompletion). Differential: each case runs on two runs set up alike, one completed alone, the other
 * inside a batch, and both must give the same answer and leave the same rows.
 */
describe("workflow task completion, alone and in a batch (differential)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ metricsPort: 0, limits: { maxHistoryEvents: HISTORY_LIMIT } });
  });
  afterAll(async () => {
    await h.close();
  });

  /** What a completion can write, without ids and times. */
  async function snapshot(runId: string) {
    const events = await h.sql`select sequence, kind, dedup_key from dex.history_events where run_id = ${runId} order by sequence`;
    const run = await h.sql`
      select status, history_length, sticky_worker_id is not null as sticky, custom_status, labels, result is not null as has_result
      from dex.runs where id = ${runId}`;
    const task = await h.sql`select attempt, leased_until is not null as leased from dex.workflow_tasks where run_id = ${runId}`;
    const activities = await h.sql`select seq, attempt, leased_until is not null as leased from dex.activity_tasks where run_id = ${runId} order by seq`;
    const timers = await h.sql`select seq, kind from dex.timers where run_id = ${runId} order by seq`;
    const inbox = await h.sql`select kind, dedup_key from dex.inbox where run_id = ${runId} order by id`;
    return JSON.parse(JSON.stringify({ events, run, task, activities, timers, inbox })) as unknown;
  }

  interface Case {
    name: string;
    /** Brings a started run (its first task claimed, `token`) to the case's state; returns the token to complete with. */
    prepare?(run: { runId: string; token: Uint8Array }): Promise<Uint8Array>;
    commands: Commands;
    expected: string;
  }

  const cases: Case[] = [
    { name: "schedules activities", commands: [scheduleActivity(1, "a"), scheduleActivity(2, "b")], expected: "OK" },
    {
      name: "starts a timer, sets status and labels",
      commands: [
        { command: { case: "startTimer", value: { seq: 1, duration: { seconds: 3600n, nanos: 0 } } } },
        { command: { case: "setCustomStatus", value: { customStatus: "waiting" } } },
        { command: { case: "upsertLabels", value: { labels: { stage: "two" } } } },
      ],
      expected: "OK",
    },
    { name: "completes the run", commands: [completeRun("done")], expected: "OK" },
    { name: "invalid commands (a seq twice)", commands: [scheduleActivity(1, "a"), scheduleActivity(1, "b")], expected: "INVALID_ARGUMENT" },
    {
      name: "past the history limit",
      commands: Array.from({ length: HISTORY_LIMIT }, (_, i) => scheduleActivity(i + 1, "a")),
      expected: "FAILED_PRECONDITION",
    },
    {
      name: "ends the run while an event waits unseen",
      async prepare({ runId, token }) {
        await h.client.sendEvent({ run: byRunId(runId), eventId: "late", payload: json("late") });
        return token;
      },
      commands: [completeRun("done")],
      expected: "ABORTED",
    },
    {
      name: "a stale token (its task completed, the next one leased)",
      async prepare({ runId, token }) {
        await h.worker.completeWorkflowTask({ taskToken: token, commands: [scheduleActivity(1, "a")] });
        const activity = await pollActivityOf(h, runId, 1);
        await h.worker.completeActivityTask({ taskToken: activity.taskToken, result: json(1) });
        await pollWorkflowTaskOf(h, runId);
        return token;
      },
      commands: [completeRun("stale")],
      expected: "NOT_FOUND",
    },
    {
      name: "the run was terminated meanwhile",
      async prepare({ runId, token }) {
        await h.client.terminateRun({ run: byRunId(runId), reason: "test" });
        return token;
      },
      commands: [scheduleActivity(1, "a")],
      expected: "NOT_FOUND",
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      // Every run is started (its first task claimed) before any completion: a poll for a later run
      // would claim a task a refused completion handed back, and the two snapshots would differ by that.
      const [alone, batched, blocker, filler] = [await startRun(h), await startRun(h), await startRun(h), await startRun(h)];
      const aloneToken = c.prepare ? await c.prepare(alone) : alone.token;
      const batchedToken = c.prepare ? await c.prepare(batched) : batched.token;
      const before = await groupCommitStats(h, OP);
      const aloneCode = await code(h.worker.completeWorkflowTask({ taskToken: aloneToken, commands: c.commands }));
      // A batch of one is the one-by-one path itself: a second completion (the filler) makes it a batch.
      const [, batchedCode, fillerCode] = await inOneBatch(h, blocker, [
        () => h.worker.completeWorkflowTask({ taskToken: batchedToken, commands: c.commands }),
        () => h.worker.completeWorkflowTask({ taskToken: filler.token, commands: [scheduleActivity(1, "a")] }),
      ]);
      expect(aloneCode, "alone").toBe(c.expected);
      expect(batchedCode, "in a batch").toBe(c.expected);
      expect(fillerCode, "the filler").toBe("OK");
      expect(await snapshot(batched.runId)).toEqual(await snapshot(alone.runId));
      // Group commits written: the lone completion (if accepted), the blocker, then the batch of the
      // filler and (if accepted) the case's completion.
      const ok = c.expected === "OK" ? 1 : 0;
      const after = await groupCommitStats(h, OP);
      expect(after.count - before.count).toBe(ok + 2);
      expect(after.sum - before.sum).toBe(ok + 1 + 1 + ok);
    });
  }
});

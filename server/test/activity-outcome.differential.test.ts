/**
 * The activity outcome write (store/activity-completions.ts) is one statement in two forms: SKIP
 * LOCKED on the runs for batches, waiting for the run's lock for a lone outcome whose run was busy.
 * Differential test: each case runs through three shapes, on fresh runs, over the real API:
 * - alone: the call(s) with nothing else in flight (a batch of one, the skip form);
 * - batch: the same call(s) sent at once with completions of other runs (shared batches);
 * - busy: the same call(s) while a transaction of the test holds the run's row: the batch skips the
 *   run, and the call is written again in the waiting form (seen waiting on the lock).
 * and the answers and everything written must be the same in all three: the answers, the task
 * row, the run's inbox, its workflow task, and the history once the next workflow task completed.
 * The alone shape is also checked against what each case must give, so that a mistake common to
 * both forms fails too.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { DexError, FailureSchema, HistoryEventSchema, type HistoryEvent } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { cancelActivities } from "../src/store/lifecycle.js";
import {
  byRunId,
  fromJson,
  groupCommitStats,
  holdRunLock,
  json,
  pollActivityOf,
  pollWorkflowTaskOf,
  scheduleActivity,
  serverLockWaiters,
  startHarness,
  startWith,
  type Harness,
} from "./helpers.js";

type Shape = "alone" | "batch" | "busy";
type Call = () => Promise<string>;

/** A retry policy; the back-off is long so that a retried task stays visibly waiting. */
const policy = (maximumAttempts: number, initialSeconds = 600) => ({
  retryPolicy: { initialInterval: { seconds: BigInt(initialSeconds) }, backoffCoefficient: 2, maximumAttempts },
});
/** Completions of other runs sent with the case in the batch shape. */
const FILLERS = 5;

async function answer(promise: Promise<object>): Promise<string> {
  return promise.then(
    (r: { willRetry?: boolean }) => (r.willRetry === undefined ? "OK" : r.willRetry ? "OK retry" : "OK final"),
    (err: unknown) => (err instanceof DexError ? err.code : `not a DexError: ${String(err)}`),
  );
}

interface Case {
  name: string;
  schedule?: Record<string, unknown>;
  /** Readies the run (its activity 1 was polled: `token`) and returns the calls to send together. */
  prepare(h: Harness, runId: string, token: Uint8Array): Promise<Call[]>;
  /**
   * How many of the calls reach the run's lock in the busy shape (and must be seen waiting there);
   * the others are answered without it (a failure whose token fences nothing is NOT_FOUND from its
   * retry decision's read; the run of an ended run is not waited for).
   */
  waiting: number;
  expected: Partial<Observation>;
}

const complete = (h: Harness, token: Uint8Array, result: unknown): Call => () =>
  answer(h.worker.completeActivityTask({ taskToken: token, result: json(result) }));
const fail = (h: Harness, token: Uint8Array, failure: Record<string, unknown>): Call => () =>
  answer(h.worker.failActivityTask({ taskToken: token, failure: { message: "boom", type: "Boom", ...failure } }));

const completed = { case: "activityCompleted", seq: 1, attempt: 1, result: "r" };
const failedFinal = (attempt: number) => ({ case: "activityFailed", seq: 1, attempt, message: "boom", type: "Boom" });

const cases: Case[] = [
  {
    name: "complete",
    prepare: async (h, _runId, token) => [complete(h, token, "r")],
    waiting: 1,
    expected: { answers: ["OK"], task: null, inbox: [completed], workflowTasks: 1, next: [completed] },
  },
  {
    name: "fail, retried",
    schedule: policy(3),
    prepare: async (h, _runId, token) => [fail(h, token, {})],
    waiting: 1,
    expected: {
      answers: ["OK retry"],
      task: { attempt: 1, leased: false, backingOff: true, lastFailure: "boom" },
      inbox: [],
      workflowTasks: 0,
      next: [],
    },
  },
  {
    name: "fail, final: non-retryable",
    schedule: policy(3),
    prepare: async (h, _runId, token) => [fail(h, token, { nonRetryable: true })],
    waiting: 1,
    expected: { answers: ["OK final"], task: null, inbox: [failedFinal(1)], workflowTasks: 1, next: [failedFinal(1)] },
  },
  {
    name: "fail, final: maximum attempts",
    schedule: policy(1),
    prepare: async (h, _runId, token) => [fail(h, token, {})],
    waiting: 1,
    expected: { answers: ["OK final"], task: null, inbox: [failedFinal(1)], workflowTasks: 1, next: [failedFinal(1)] },
  },
  {
    name: "stale token (another lease id)",
    prepare: async (h, _runId, token) => {
      const forged = Uint8Array.from(token);
      forged[20] = forged[20]! ^ 0xff;
      return [complete(h, forged, "forged"), fail(h, forged, { nonRetryable: true })];
    },
    waiting: 1,
    expected: {
      answers: ["NOT_FOUND", "NOT_FOUND"],
      task: { attempt: 1, leased: true, backingOff: false, lastFailure: null },
      inbox: [],
      workflowTasks: 0,
      next: [],
    },
  },
  {
    name: "token of an earlier attempt",
    schedule: policy(3),
    prepare: async (h, runId, token) => {
      // Attempt 1 fails with no back-off; attempt 2 is claimed: attempt 1's token is dead.
      await h.worker.failActivityTask({ taskToken: token, failure: { message: "first", type: "Boom" }, nextRetryDelay: {} });
      expect((await pollActivityOf(h, runId, 1)).attempt).toBe(2);
      return [complete(h, token, "late"), fail(h, token, { nonRetryable: true })];
    },
    waiting: 1,
    expected: {
      answers: ["NOT_FOUND", "NOT_FOUND"],
      task: { attempt: 2, leased: true, backingOff: false, lastFailure: "first" },
      inbox: [],
      workflowTasks: 0,
      next: [],
    },
  },
  {
    name: "one token completed twice at once",
    prepare: async (h, _runId, token) => [complete(h, token, "r"), complete(h, token, "r")],
    waiting: 2,
    expected: { answers: ["NOT_FOUND", "OK"], task: null, inbox: [completed], workflowTasks: 1, next: [completed] },
  },
  {
    name: "one token failed twice at once",
    schedule: policy(3),
    prepare: async (h, _runId, token) => [fail(h, token, { nonRetryable: true }), fail(h, token, { nonRetryable: true })],
    waiting: 2,
    expected: { answers: ["NOT_FOUND", "OK final"], task: null, inbox: [failedFinal(1)], workflowTasks: 1, next: [failedFinal(1)] },
  },
  {
    name: "run terminated meanwhile",
    prepare: async (h, runId, token) => {
      await h.client.terminateRun({ run: byRunId(runId), reason: "test" });
      return [complete(h, token, "r"), fail(h, token, { nonRetryable: true })];
    },
    waiting: 0,
    expected: { answers: ["NOT_FOUND", "NOT_FOUND"], inbox: [], workflowTasks: 0, next: [] },
  },
];

interface Observation {
  answers: string[];
  task: { attempt: number; leased: boolean; backingOff: boolean; lastFailure: string | null } | null;
  inbox: Array<Record<string, unknown>>;
  workflowTasks: number;
  /** The new events of the run's next workflow task ([] if it has none). */
  next: Array<Record<string, unknown>>;
  /** The history once that workflow task completed. */
  history: Array<Record<string, unknown>>;
}

function normalize(event: Pick<HistoryEvent, "attributes">): Record<string, unknown> {
  const a = event.attributes;
  if (a.case === "activityCompleted") return { case: a.case, seq: a.value.seq, attempt: a.value.attempt, result: fromJson(a.value.result) };
  if (a.case === "activityFailed") {
    return { case: a.case, seq: a.value.seq, attempt: a.value.attempt, message: a.value.failure?.message, type: a.value.failure?.type };
  }
  return { case: a.case };
}

async function observe(h: Harness, runId: string, answers: string[]): Promise<Observation> {
  const [task] = await h.sql<{ attempt: number; leased: boolean; backing_off: boolean; last_failure: Buffer | null }[]>`
    select attempt, leased_until is not null as leased, leased_until is null and visible_at > now() + interval '1 minute' as backing_off,
           last_failure
    from dex.activity_tasks where run_id = ${runId}`;
  const inbox = await h.sql<{ event: Buffer }[]>`select event from dex.inbox where run_id = ${runId} order by id`;
  const [{ n: workflowTasks } = { n: -1 }] = await h.sql<{ n: number }[]>`
    select count(*)::int as n from dex.workflow_tasks where run_id = ${runId}`;
  let next: Observation["next"] = [];
  if (workflowTasks > 0) {
    const wf = await pollWorkflowTaskOf(h, runId);
    next = wf.newEvents.map(normalize);
    await h.worker.completeWorkflowTask({ taskToken: wf.taskToken, commands: [] });
  }
  const history = (await h.client.getRunHistory({ run: byRunId(runId) })).events.map(normalize);
  return {
    answers: [...answers].sort(),
    task: task
      ? {
          attempt: task.attempt,
          leased: task.leased,
          backingOff: task.backing_off,
          lastFailure: task.last_failure ? fromBinary(FailureSchema, task.last_failure).message : null,
        }
      : null,
    inbox: inbox.map((row) => normalize(fromBinary(HistoryEventSchema, row.event))),
    workflowTasks,
    next,
    history,
  };
}

/** A run whose activity 1 is polled (attempt 1); returns the run and the token. */
async function runWithActivity(h: Harness, schedule: Record<string, unknown> = {}): Promise<{ runId: string; token: Uint8Array }> {
  const runId = await startWith(h, [scheduleActivity(1, "a", schedule)]);
  const task = await pollActivityOf(h, runId, 1);
  return { runId, token: task.taskToken };
}


async function runShape(h: Harness, c: Case, shape: Shape): Promise<Observation> {
  const { runId, token } = await runWithActivity(h, c.schedule);
  const calls = await c.prepare(h, runId, token);
  let answers: string[];
  if (shape === "alone") {
    answers = [];
    for (const call of calls) answers.push(await call());
  } else if (shape === "batch") {
    const fillers = await Promise.all(Array.from({ length: FILLERS }, () => runWithActivity(h)));
    const before = await groupCommitStats(h, "activity_completion");
    const all = [...fillers.map((f) => complete(h, f.token, "filler")), ...calls];
    // The case's calls in the middle of the others, all sent in one turn.
    all.splice(2, 0, ...all.splice(FILLERS));
    const results = await Promise.all(all.map((call) => call()));
    expect(results.filter((r, i) => !(i >= 2 && i < 2 + calls.length) && r !== "OK")).toEqual([]);
    answers = results.slice(2, 2 + calls.length);
    const after = await groupCommitStats(h, "activity_completion");
    // Some batch held more than one outcome: the calls shared statements.
    const written = FILLERS + answers.filter((a) => a.startsWith("OK")).length;
    expect(after.sum - before.sum).toBe(written);
    expect(after.count - before.count).toBeLessThan(written);
  } else {
    const lock = await holdRunLock(h, runId);
    let answered = 0;
    const pending = Promise.all(calls.map((call) => call().finally(() => answered++)));
    try {
      // The calls that need the run wait for its lock in the waiting form; the others are answered.
      await waitFor(async () => answered === calls.length - c.waiting && (await serverLockWaiters(h)) === c.waiting, {
        message: `${c.waiting} call(s) waiting for the run, the others answered`,
      });
      expect(answered).toBe(calls.length - c.waiting);
    } finally {
      await lock.release();
    }
    answers = await pending;
  }
  return observe(h, runId, answers);
}

describe("one activity outcome write: alone, in a batch, and with its run busy, every case gives the same answers and rows", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ metricsPort: 0 });
  });
  afterAll(async () => {
    await h.close();
  });

  for (const c of cases) {
    it(c.name, async () => {
      const alone = await runShape(h, c, "alone");
      expect(alone).toMatchObject(c.expected);
      expect(await runShape(h, c, "batch"), "batch").toEqual(alone);
      expect(await runShape(h, c, "busy"), "busy").toEqual(alone);
    });
  }

  it("a cancellation that lands between a failure's retry decision and its write makes the failure final", async () => {
    const { runId, token } = await runWithActivity(h, policy(3));
    const lock = await holdRunLock(h, runId);
    // The failure reads the task (no cancellation: retry), then waits for the run's lock ...
    const pending = answer(h.worker.failActivityTask({ taskToken: token, failure: { message: "boom", type: "Boom" } }));
    await waitFor(async () => (await serverLockWaiters(h)) >= 1, { message: "the failure to wait for the run" });
    // ... while the holder of the lock (as a workflow task completion would) requests the cancellation.
    await lock.release((tx) => cancelActivities(tx, runId, [1]));
    expect(await pending).toBe("OK final");
    expect(await observe(h, runId, [])).toMatchObject({ task: null, inbox: [failedFinal(1)], next: [failedFinal(1)] });
  });
});

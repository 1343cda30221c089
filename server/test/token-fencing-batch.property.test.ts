/**
 * Token fencing under batches, property-based: several completions and failures of the same and
 * of different activity tasks of a run are sent at once (so they share group-commit batches of
 * the one outcome write, store/activity-completions.ts), racing with real lease expiry, the lease
 * reaper (which writes its time-outs through the same statement) and re-claims, against the real
 * gRPC API of a real server on a real Postgres. THE FIRST VALID RESULT WINS, EVERY OTHER CALL IS
 * NOT_FOUND, A REJECTED CALL CHANGES NOTHING, AND EACH ACTIVITY'S OUTCOME REACHES HISTORY EXACTLY ONCE.
 *
 * A scenario is a run with 1..3 activities (heartbeat timeout LEASE_MS, a few attempts, a short
 * back-off) on queues of its own, and rounds. In a round, the current attempts' leases may first be
 * left to run out (then the round's calls race the reaper), then a burst of calls is sent at once,
 * each with the current attempt's token, an earlier attempt's or a forged one, completing or
 * failing (retryable or not); then every task waiting for its next attempt is claimed again. Each
 * call carries a marker of its own (in its result or failure message), so what it wrote can be
 * found. Checked after every round, against the answers and the database:
 * - a token of an earlier attempt, or a forged one, is NOT_FOUND;
 * - of the calls carrying one attempt's token, at most one is accepted; exactly one while the lease
 *   was certainly live (it ends after the database clock read once the burst was answered);
 * - an accepted call's marker is written at once, with the token's attempt: in the inbox (a result,
 *   a final failure) or as the task's last failure with the lease dropped (a retry, whose answer
 *   follows the retry policy); a rejected call's marker is never written anywhere;
 * - a claim hands out the next attempt (attempts are never skipped nor repeated).
 * At the end every remaining activity is completed, the workflow tasks drain the inbox, and the
 * history holds exactly one outcome per activity: the accepted delivering call's, or the
 * reaper's time-out of the last attempt.
 *
 * Reproduce a failure with the seed and path fast-check prints: DEX_FC_SEED=<seed>
 * DEX_FC_PATH=<path> pnpm vitest run server/test/token-fencing-batch.property.test.ts
 * (DEX_FC_RUNS changes the number of scenarios; DEX_FC_COVERAGE=1 prints how often each path was taken).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { fromBinary } from "@bufbuild/protobuf";
import { FailureSchema, HistoryEventSchema, TaskQueueType, type HistoryEvent } from "@dex/proto";
import { DEFAULT_WAIT_MS, waitFor } from "@dex/testing";
import { garbleToken } from "./token-fencing.model.js";
import { answer, cover, fcParameters, ms, printCoverage } from "./support/fencing-calls.js";
import { waitingForBatch } from "../src/engine/group-commit.js";
import {
  byRunId,
  fromJson,
  groupCommitStats,
  holdLock,
  json,
  pollActivityOf,
  pollWorkflowTaskOf,
  scheduleActivity,
  serverLockWaiters,
  startHarness,
  uniqueId,
  type Harness,
} from "./helpers.js";

/** The activity's lease (heartbeat timeout): short, so that expiries are real and cheap. */
const LEASE_MS = 700;
const RUNS = Number(process.env.DEX_FC_RUNS ?? 25);
const PROPERTY_TIME_LIMIT_MS = 60_000;

type Op = "complete" | "failRetry" | "failFatal";
interface CallSpec {
  task: number;
  token: "current" | "earlier" | "forged";
  op: Op;
}
interface Round {
  expireFirst: boolean;
  calls: CallSpec[];
}
interface Scenario {
  activities: number;
  maximumAttempts: number;
  rounds: Round[];
}

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  activities: fc.integer({ min: 1, max: 3 }),
  maximumAttempts: fc.integer({ min: 2, max: 3 }),
  rounds: fc.array(
    fc.record({
      expireFirst: fc.boolean(),
      calls: fc.array(
        fc.record({
          task: fc.nat(2),
          token: fc.constantFrom<CallSpec["token"]>("current", "current", "current", "earlier", "forged"),
          op: fc.constantFrom<Op>("complete", "failRetry", "failFatal"),
        }),
        { minLength: 1, maxLength: 6 },
      ),
    }),
    { minLength: 1, maxLength: 4 },
  ),
});

interface TaskModel {
  seq: number;
  /** tokens[a - 1] is attempt a's. */
  tokens: Uint8Array[];
  done: boolean;
}

interface Sent {
  spec: CallSpec;
  marker: string;
  attempt: number | undefined;
  code: string;
  willRetry: boolean | undefined;
}

/** Markers of the rows written for the run: inbox events and task rows' last failures (with what they say). */
async function writtenNow(h: Harness, runId: string) {
  const inbox = await h.sql<{ event: Buffer }[]>`select event from dex.inbox where run_id = ${runId}`;
  const tasks = await h.sql<{ seq: number; attempt: number; leased: boolean; last_failure: Buffer | null }[]>`
    select seq, attempt, leased_until is not null as leased, last_failure from dex.activity_tasks where run_id = ${runId}`;
  return {
    outcomes: inbox.map((r) => outcomeOf(fromBinary(HistoryEventSchema, r.event))).filter((o) => o !== undefined),
    tasks: tasks.map((t) => ({ ...t, lastFailure: t.last_failure ? fromBinary(FailureSchema, t.last_failure).message : undefined })),
  };
}

function outcomeOf(event: HistoryEvent): { seq: number; attempt: number; marker: string; final: "completed" | "failed" } | undefined {
  const a = event.attributes;
  if (a.case === "activityCompleted") return { seq: a.value.seq, attempt: a.value.attempt, marker: String(fromJson(a.value.result)), final: "completed" };
  if (a.case === "activityFailed") return { seq: a.value.seq, attempt: a.value.attempt, marker: a.value.failure?.message ?? "", final: "failed" };
  return undefined;
}

class ScenarioRun {
  private readonly tasks: TaskModel[];
  private runId = "";
  private workflowQueue = "";
  private activityQueue = "";
  private readonly accepted = new Map<string, Sent>();
  private readonly rejected = new Set<string>();
  private calls = 0;

  constructor(
    private readonly h: Harness,
    private readonly scenario: Scenario,
  ) {
    this.tasks = Array.from({ length: scenario.activities }, (_, i) => ({ seq: i + 1, tokens: [], done: false }));
  }

  async run(): Promise<void> {
    const h = this.h;
    [this.workflowQueue, this.activityQueue] = await Promise.all([
      createQueue(h, TaskQueueType.WORKFLOW, "fb"),
      createQueue(h, TaskQueueType.ACTIVITY, "fb"),
    ]);
    const { runId } = await h.client.startWorkflow({ workflowName: "fencing", instanceId: uniqueId("fb"), taskQueue: this.workflowQueue });
    this.runId = runId;
    const policy = { initialInterval: ms(10), backoffCoefficient: 1, maximumAttempts: this.scenario.maximumAttempts, nonRetryableErrorTypes: [] };
    const first = await this.pollWorkflowTask();
    await h.worker.completeWorkflowTask({
      taskToken: first.taskToken,
      commands: this.tasks.map((t) =>
        scheduleActivity(t.seq, "act", { taskQueue: this.activityQueue, heartbeatTimeout: ms(LEASE_MS), startToCloseTimeout: ms(120_000), retryPolicy: policy }),
      ),
    });
    await this.claimWaiting();
    for (const round of this.scenario.rounds) {
      if (this.tasks.every((t) => t.done)) break;
      await this.playRound(round);
      await this.claimWaiting();
    }
    await this.finish();
  }

  private async playRound(round: Round): Promise<void> {
    const h = this.h;
    if (round.expireFirst) {
      await waitFor(async () => {
        const [row] = await h.sql<{ ended: boolean }[]>`
          select coalesce(bool_and(leased_until <= now()), true) as ended from dex.activity_tasks
          where run_id = ${this.runId} and leased_until is not null`;
        return row!.ended;
      }, { message: "the leases to run out" });
    }
    const leases = new Map(
      (
        await h.sql<{ seq: number; attempt: number; end_us: string | null }[]>`
          select seq, attempt, (extract(epoch from leased_until) * 1e6)::bigint::text as end_us
          from dex.activity_tasks where run_id = ${this.runId}`
      ).map((r) => [r.seq, r]),
    );
    const prepared = round.calls.map((spec) => this.prepare({ ...spec, task: spec.task % this.tasks.length }));
    const sent = await Promise.all(prepared.map((p) => p.send()));
    const [clock] = await h.sql<{ now_us: string }[]>`select (extract(epoch from now()) * 1e6)::bigint::text as now_us`;
    const nowUs = Number(clock!.now_us);
    const written = await writtenNow(h, this.runId);

    for (const s of sent) {
      if (s.code === "OK") this.accepted.set(s.marker, s);
      else {
        expect(s.code, `call ${s.marker}`).toBe("NOT_FOUND");
        this.rejected.add(s.marker);
      }
      cover(`${s.spec.token} token: ${s.code}`);
      if (s.spec.token !== "current") expect(s.code, `${s.spec.token} token, call ${s.marker}`).toBe("NOT_FOUND");
    }
    // Per task and attempt: at most one accepted; exactly one while the lease was certainly live.
    for (const task of this.tasks) {
      const current = sent.filter((s) => s.spec.task === task.seq - 1 && s.spec.token === "current" && s.attempt !== undefined);
      if (current.length === 0) continue;
      const winners = current.filter((s) => s.code === "OK");
      expect(winners.length, `accepted calls for activity ${task.seq}`).toBeLessThanOrEqual(1);
      const lease = leases.get(task.seq);
      const certainlyLive = lease?.end_us != null && Number(lease.end_us) > nowUs && lease.attempt === current[0]!.attempt;
      if (certainlyLive) expect(winners.length, `activity ${task.seq}: its live attempt's first call wins`).toBe(1);
      const winner = winners[0];
      cover(`${current.length > 1 ? "several" : "one"} current call(s), ${winner ? `won by ${winner.spec.op}` : "none accepted"}, lease ${certainlyLive ? "live" : "maybe over"}`);
      if (!winner) continue;
      const outcome = written.outcomes.find((o) => o.marker === winner.marker);
      const row = written.tasks.find((t) => t.seq === task.seq);
      if (winner.willRetry) {
        expect(winner.spec.op, "only a retryable failure is retried").toBe("failRetry");
        expect(winner.attempt!, "retried below maximum_attempts").toBeLessThan(this.scenario.maximumAttempts);
        expect(row, "the retried task").toMatchObject({ attempt: winner.attempt, leased: false, lastFailure: winner.marker });
        expect(outcome).toBeUndefined();
      } else {
        const final = winner.spec.op === "complete" ? "completed" : "failed";
        if (winner.spec.op === "failRetry") expect(winner.attempt).toBe(this.scenario.maximumAttempts);
        expect(outcome, `the outcome of ${winner.marker}`).toEqual({ seq: task.seq, attempt: winner.attempt, marker: winner.marker, final });
        expect(row, "a delivered task is gone").toBeUndefined();
        task.done = true;
      }
    }
    this.expectNoRejectedMarker([...written.outcomes.map((o) => o.marker), ...written.tasks.map((t) => t.lastFailure ?? "")]);
    // The reaper may have delivered a final time-out meanwhile: the task is then gone.
    for (const task of this.tasks) if (!written.tasks.some((t) => t.seq === task.seq)) task.done = true;
  }

  private expectNoRejectedMarker(markers: string[]): void {
    for (const marker of markers) expect(this.rejected.has(marker), `rejected call ${marker} wrote something`).toBe(false);
  }

  private prepare(spec: CallSpec): { send(): Promise<Sent> } {
    const task = this.tasks[spec.task]!;
    const marker = `m${++this.calls}`;
    const newest = task.tokens.length;
    let token: Uint8Array;
    let attempt: number | undefined;
    if (spec.token === "current" || newest < 2) {
      // Without an earlier attempt, "earlier" is the current token (counted as current).
      token = task.tokens[newest - 1]!;
      attempt = newest;
      if (spec.token === "earlier") spec = { ...spec, token: "current" };
    } else {
      token = task.tokens[newest - 2]!;
      attempt = newest - 1;
    }
    if (spec.token === "forged") {
      token = garbleToken(token, "activity", "flipLease", Uint8Array.from([this.calls % 251, 7]));
      attempt = undefined;
    }
    const h = this.h;
    const send = async (): Promise<Sent> => {
      const call =
        spec.op === "complete"
          ? h.worker.completeActivityTask({ taskToken: token, result: json(marker) })
          : h.worker.failActivityTask({
              taskToken: token,
              failure: { message: marker, type: "Boom", nonRetryable: spec.op === "failFatal" },
            });
      const result = await answer(call as Promise<{ willRetry?: boolean }>);
      return { spec, marker, attempt, code: result.code, willRetry: "value" in result ? result.value.willRetry : undefined };
    };
    return { send };
  }

  /** Claims every task waiting for its next attempt; a claim hands out exactly the next attempt. */
  private async claimWaiting(): Promise<void> {
    const h = this.h;
    for (;;) {
      const rows = await h.sql<{ seq: number }[]>`
        select seq from dex.activity_tasks where run_id = ${this.runId} and leased_until is null`;
      const waiting = rows.map((r) => r.seq);
      for (const task of this.tasks) if (!task.done && !(await this.exists(task.seq))) task.done = true;
      if (waiting.length === 0) return;
      const { tasks } = await h.worker.pollActivityTasks({ taskQueue: this.activityQueue, workerId: "fb", maxTasks: 10, maxWait: ms(DEFAULT_WAIT_MS) });
      expect(tasks.length, "a waiting task is claimed").toBeGreaterThan(0);
      for (const polled of tasks) {
        expect(polled.runId).toBe(this.runId);
        const task = this.tasks[polled.seq - 1]!;
        expect(polled.attempt, `activity ${polled.seq}: the next attempt`).toBe(task.tokens.length + 1);
        task.tokens.push(polled.taskToken);
      }
    }
  }

  private async exists(seq: number): Promise<boolean> {
    const rows = await this.h.sql`select 1 from dex.activity_tasks where run_id = ${this.runId} and seq = ${seq}`;
    return rows.length > 0;
  }

  /** Completes what is left, drains the inbox into history, checks it, and ends the run. */
  private async finish(): Promise<void> {
    const h = this.h;
    for (let guard = 0; this.tasks.some((t) => !t.done); guard++) {
      expect(guard, "the remaining activities complete").toBeLessThan(20);
      await this.claimWaiting();
      for (const task of this.tasks.filter((t) => !t.done)) {
        const s = await this.prepare({ task: task.seq - 1, token: "current", op: "complete" }).send();
        if (s.code === "OK") {
          this.accepted.set(s.marker, s);
          task.done = true;
        } else this.rejected.add(s.marker);
      }
    }
    const events: HistoryEvent[] = [];
    for (;;) {
      const [pending] = await h.sql<{ n: number }[]>`
        select (select count(*) from dex.workflow_tasks where run_id = ${this.runId})::int
             + (select count(*) from dex.inbox where run_id = ${this.runId})::int as n`;
      if (pending!.n === 0) break;
      const wf = await this.pollWorkflowTask();
      events.push(...wf.newEvents);
      await h.worker.completeWorkflowTask({ taskToken: wf.taskToken, commands: [] });
    }
    const history = (await h.client.getRunHistory({ run: byRunId(this.runId) })).events;
    const outcomes = history.map(outcomeOf).filter((o) => o !== undefined);
    expect(outcomes.map((o) => o.seq).sort(), "one outcome per activity in history").toEqual(this.tasks.map((t) => t.seq));
    for (const outcome of outcomes) {
      const winner = this.accepted.get(outcome.marker);
      if (winner) {
        expect(winner.attempt, `${outcome.marker}: the attempt its token named`).toBe(outcome.attempt);
        expect(winner.spec.task + 1).toBe(outcome.seq);
      } else {
        // No accepted call delivered it: the reaper timed out the last attempt.
        expect(outcome.final).toBe("failed");
        expect(outcome.marker, `activity ${outcome.seq}'s outcome`).toMatch(/heartbeat/);
        expect(outcome.attempt).toBe(this.scenario.maximumAttempts);
      }
    }
    this.expectNoRejectedMarker(outcomes.map((o) => o.marker));
    await h.client.terminateRun({ run: byRunId(this.runId), reason: "scenario over" });
  }

  private async pollWorkflowTask() {
    const { tasks } = await this.h.worker.pollWorkflowTasks({
      taskQueue: this.workflowQueue,
      workerId: "fb-wf",
      maxTasks: 1,
      maxWait: ms(DEFAULT_WAIT_MS),
    });
    expect(tasks.map((t) => t.runId), "the run's workflow task").toEqual([this.runId]);
    return tasks[0]!;
  }
}

async function createQueue(h: Harness, type: TaskQueueType, prefix: string): Promise<string> {
  const name = uniqueId(prefix).replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);
  await h.queues.createTaskQueue({ name, type });
  return name;
}

/**
 * Three runs' activity completions written by one batch statement: the first completion's batch is
 * held on its task row (a lock of the test's own), the other two are sent and wait for the next
 * batch (waitingForBatch), then the lock goes.
 */
async function formOneBatch(h: Harness): Promise<void> {
  const OP = "activity_completion";
  const tasks = [];
  for (let i = 0; i < 3; i++) {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("fb-batch") });
    const workflowTask = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: workflowTask.taskToken, commands: [scheduleActivity(1, "a")] });
    tasks.push(await pollActivityOf(h, runId, 1));
  }
  const [first, ...rest] = tasks;
  const held = await holdLock(h, (tx) => tx`select 1 from dex.activity_tasks where run_id = ${first!.runId} for no key update`);
  const firstDone = h.worker.completeActivityTask({ taskToken: first!.taskToken, result: json(1) });
  await waitFor(async () => (await serverLockWaiters(h)) >= 1, { message: "the first completion's batch waits for its task row" });
  const waitingBefore = waitingForBatch(OP);
  const restDone = rest.map((task) => h.worker.completeActivityTask({ taskToken: task.taskToken, result: json(1) }));
  await waitFor(() => waitingForBatch(OP) >= waitingBefore + rest.length, { message: "the other completions wait for the next batch" });
  const before = await groupCommitStats(h, OP);
  await held.release();
  await Promise.all([firstDone, ...restDone]);
  const after = await groupCommitStats(h, OP);
  expect({ batches: after.count - before.count, outcomes: after.sum - before.sum }).toEqual({ batches: 2, outcomes: 3 });
}

describe("token fencing under batched completions (property-based)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ metricsPort: 0 });
  });
  afterAll(async () => {
    printCoverage();
    await h?.close();
  });

  it("the first valid result wins, every other call is NOT_FOUND and changes nothing, history exactly once", { timeout: 120_000 }, async ({ signal }) => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, (scenario) => {
        signal.throwIfAborted();
        return new ScenarioRun(h, scenario).run();
      }),
      fcParameters(RUNS, PROPERTY_TIME_LIMIT_MS),
    );
    // The bursts share batches as the scheduler has it (on a loaded machine, maybe never); one batch
    // formed on purpose makes sure the batch statement wrote several outcomes in this file.
    await formOneBatch(h);
    const batches = await groupCommitStats(h, "activity_completion");
    expect(batches.sum).toBeGreaterThan(batches.count);
  });
});

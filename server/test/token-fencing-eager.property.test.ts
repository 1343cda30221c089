/**
 * Token fencing of EAGERLY dispatched activity tasks, property-based (issue 12): a workflow-task
 * completion schedules 1 to 3 activities and offers eager slots for some of them, so they come
 * back in its answer leased to the offering worker ("eager", attempt 1); the rest wait for a poll.
 * Then random actions race on them: completions, failures, heartbeats, concurrent duplicates, real
 * lease expiries (the reaper retries or fails the attempt), polls of another worker ("b") that
 * claim the waiting attempts and the retries, and forged tokens. Against the real gRPC API of a
 * real server on a real Postgres: THE FIRST VALID RESULT WINS, EVERY OTHER CALL IS REJECTED, A
 * REJECTED CALL CHANGES NOTHING, AND EACH ACTIVITY'S OUTCOME REACHES HISTORY EXACTLY ONCE.
 *
 * The rules are token-fencing.property.test.ts's (its header), applied per activity with its
 * model (token-fencing.model.ts ActivityModel, one per activity): an eager task is a claim made
 * by the completion, so the model starts it as claimed (token 0, attempt 1, the lease from the
 * answer's lease_deadline) and from then on it is an activity task like any other. The checks
 * here are the same ones, for several activities of one run at once: a poll hands out only
 * attempts the models say are waiting (or that the reaper retried during the poll); the state
 * snapshot (every activity row of the run, its inbox, its history) is unchanged by a rejected
 * call but for what the reaper did to an attempt whose lease had ended; at the end the run's next
 * workflow task carries each outcome once, and its completion puts each in history once.
 *
 * The run's first workflow task is generated too (eager-start-fencing.ts): handed out by an EAGER
 * START (leased in the start's answer) or a poll, then repeated starts, lease expiries with another
 * worker's claim, stale and forged tokens race on it before the current token completes it.
 *
 * Reproduce: DEX_FC_SEED=<seed> DEX_FC_PATH=<path> pnpm vitest run server/test/token-fencing-eager.property.test.ts;
 * DEX_FC_RUNS sets the number of scenarios, DEX_FC_COVERAGE=1 prints the paths taken.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { fromBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { DexError, FailureKind, FailureSchema, HistoryEventSchema, TaskQueueType, TimeoutType, type ActivityTask, type HistoryEvent } from "@dex/proto";
import { DEFAULT_WAIT_MS, waitFor } from "@dex/testing";
import {
  activityAction,
  ActivityModel,
  expectedForGarble,
  FATAL_TYPE,
  garbleToken,
  leaseIdOf,
  pickToken,
  type ActivityAction,
  type ActivityOutcome,
  type FailureChoice,
} from "./token-fencing.model.js";
import { byRunId, completeRun, fromJson, json, scheduleActivity, startHarness, uniqueId, type Harness } from "./helpers.js";
import { firstTaskPlan, playFirstTask, type FirstTaskPlan } from "./eager-start-fencing.js";

const HEARTBEAT_MS = 400;
const START_TO_CLOSE_MS = 120_000;
const RETRY_INTERVAL_MS = 10;
const RUNS = Number(process.env.DEX_FC_RUNS ?? 50);
const AFTER_THE_END = 2;
const PROPERTY_TIME_LIMIT_MS = 75_000;

const ms = (n: number) => ({ seconds: BigInt(Math.floor(n / 1000)), nanos: (n % 1000) * 1e6 });
const micros = (t: Timestamp) => Number(t.seconds) * 1e6 + Math.floor(t.nanos / 1000);

const coverage = new Map<string, number>();
const cover = (label: string) => coverage.set(label, (coverage.get(label) ?? 0) + 1);

type Answer<T> = { code: "OK"; value: T } | { code: string; message: string };
async function answer<T>(promise: Promise<T>): Promise<Answer<T>> {
  try {
    return { code: "OK", value: await promise };
  } catch (err) {
    if (err instanceof DexError) return { code: err.code, message: err.message };
    throw err;
  }
}

interface Scenario {
  activities: number;
  /** Eager slots offered: the first `slots` activities come back leased. */
  slots: number;
  maximumAttempts: number;
  actions: Array<{ activity: number; action: ActivityAction }>;
  /** How the run's first workflow task is handed out (eager start or poll), and what races on it. */
  firstTask: FirstTaskPlan;
}

const scenario: fc.Arbitrary<Scenario> = fc
  .record({ activities: fc.integer({ min: 1, max: 3 }), maximumAttempts: fc.constantFrom(0, 1, 2, 3) })
  .chain(({ activities, maximumAttempts }) =>
    fc.record({
      activities: fc.constant(activities),
      slots: fc.integer({ min: 1, max: activities }),
      maximumAttempts: fc.constant(maximumAttempts),
      actions: fc.array(fc.record({ activity: fc.nat(activities - 1), action: activityAction }), { minLength: 1, maxLength: 10 }),
      firstTask: firstTaskPlan,
    }),
  );

interface Snapshot {
  nowUs: number;
  /** Activity rows by seq (every column), absent once the task is gone. */
  tasks: Record<string, Record<string, unknown>>;
  leasedUntilUs: Record<string, number | null>;
  inbox: Array<{ kind: string; event: string; dedup_key: string | null }>;
  history: unknown;
}

function failureOf(choice: FailureChoice, message: string) {
  return { message, type: choice === "nonRetryableType" ? FATAL_TYPE : "FlakyError", nonRetryable: choice === "nonRetryable" };
}

function expectOutcome(event: HistoryEvent, seq: number, outcome: ActivityOutcome): void {
  const a = event.attributes;
  if (outcome.kind === "completed") {
    expect(a.case).toBe("activityCompleted");
    if (a.case !== "activityCompleted") return;
    expect([a.value.seq, a.value.attempt], "the outcome's seq and attempt").toEqual([seq, outcome.attempt]);
    expect(fromJson(a.value.result), "the first valid result").toBe(outcome.result);
  } else {
    expect(a.case).toBe("activityFailed");
    if (a.case !== "activityFailed") return;
    expect([a.value.seq, a.value.attempt], "the outcome's seq and attempt").toEqual([seq, outcome.attempt]);
    if (outcome.timeout) expect([a.value.failure?.kind, a.value.failure?.timeoutType]).toEqual([FailureKind.TIMEOUT, TimeoutType.HEARTBEAT]);
    else expect(a.value.failure?.message, "the first valid failure").toBe(outcome.message);
  }
}

function lastFailure(task: Record<string, unknown> | undefined) {
  const hex = typeof task?.last_failure === "string" ? task.last_failure.replace(/^\\x/, "") : "";
  return fromBinary(FailureSchema, Buffer.from(hex, "hex"));
}

describe("eager activity tasks are fenced like polled ones (property-based)", () => {
  let h: Harness;
  let workflowQueue: string;
  let activityQueue: string;

  beforeAll(async () => {
    h = await startHarness({ workflowTaskRetry: { initialMs: 20, maxMs: 50 } });
    const name = (p: string) => uniqueId(p).replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);
    [workflowQueue, activityQueue] = [name("eager-fw"), name("eager-fa")];
    await h.queues.createTaskQueue({ name: workflowQueue, type: TaskQueueType.WORKFLOW });
    await h.queues.createTaskQueue({ name: activityQueue, type: TaskQueueType.ACTIVITY });
  });
  afterAll(async () => {
    if (process.env.DEX_FC_COVERAGE) console.log([...coverage].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}: ${n}`).join("\n"));
    await h?.close();
  });

  it("the first valid result wins, stale and forged eager tokens change nothing, history once", { timeout: 150_000 }, async ({ signal }) => {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        signal.throwIfAborted();
        await new EagerScenarioRun(h, s, workflowQueue, activityQueue).run();
      }),
      {
        numRuns: RUNS,
        interruptAfterTimeLimit: PROPERTY_TIME_LIMIT_MS,
        ...(process.env.DEX_FC_SEED ? { seed: Number(process.env.DEX_FC_SEED) } : {}),
        ...(process.env.DEX_FC_PATH ? { path: process.env.DEX_FC_PATH } : {}),
      },
    );
  });
});

class EagerScenarioRun {
  private readonly models: ActivityModel[];
  private readonly tokens: Uint8Array[][];
  private runId = "";
  /** The worker that completed the first workflow task: the run is sticky to it (decision 0009). */
  private workflowWorker = "wf";
  private baseline: unknown;
  private step = 0;

  constructor(
    private readonly h: Harness,
    private readonly s: Scenario,
    private readonly workflowQueue: string,
    private readonly activityQueue: string,
  ) {
    this.models = Array.from({ length: s.activities }, () => new ActivityModel(s.maximumAttempts));
    this.tokens = Array.from({ length: s.activities }, () => []);
  }

  private seqOf(i: number): number {
    return i + 1;
  }

  async run(): Promise<void> {
    try {
      await this.start();
      let afterEnd = 0;
      for (const { activity, action } of this.s.actions) {
        if (this.models.every((m) => m.phase === "done") && ++afterEnd > AFTER_THE_END) break;
        this.step++;
        try {
          await this.act(activity, action);
        } catch (err) {
          throw this.annotate(err, `step ${this.step} activity ${activity} ${JSON.stringify(action, (_k, v: unknown) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v))}`);
        }
      }
      await this.finish().catch((err: unknown) => {
        throw this.annotate(err, "final history check");
      });
    } finally {
      await this.h.client.terminateRun({ run: byRunId(this.runId), reason: "scenario over" }).catch(() => undefined);
    }
  }

  private annotate(err: unknown, where: string): Error {
    const state = this.models.map((m, i) => `#${i}: ${m.phase} attempt ${m.attempt} token ${m.current ?? "-"}/${this.tokens[i]!.length}`).join("; ");
    return new Error(`run ${this.runId}, ${where} (${state}): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }

  private async start(): Promise<void> {
    const { h, s } = this;
    const first = await playFirstTask(h, s.firstTask, this.workflowQueue, cover);
    const runId = first.runId;
    this.runId = runId;
    this.workflowWorker = first.workerId;
    const before = await this.snap(false);
    const done = await h.worker.completeWorkflowTask({
      taskToken: first.token,
      commands: this.models.map((_, i) =>
        scheduleActivity(this.seqOf(i), "act", {
          taskQueue: this.activityQueue,
          heartbeatTimeout: ms(HEARTBEAT_MS),
          startToCloseTimeout: ms(START_TO_CLOSE_MS),
          retryPolicy: { initialInterval: ms(RETRY_INTERVAL_MS), backoffCoefficient: 1, maximumAttempts: s.maximumAttempts, nonRetryableErrorTypes: [FATAL_TYPE] },
        }),
      ),
      eagerActivitySlots: [{ taskQueue: this.activityQueue, slots: s.slots, workerId: "eager" }],
    });
    const after = await this.snap(false);
    this.baseline = after.history;
    expect(done.activityTasks.map((t) => [t.seq, t.attempt, t.runId]), "the first `slots` activities come back eagerly").toEqual(
      Array.from({ length: s.slots }, (_, i) => [this.seqOf(i), 1, runId]),
    );
    for (const t of done.activityTasks) this.claimed(t.seq - 1, t, before, after);
    cover(`eager: ${s.slots} of ${s.activities}`);
  }

  /** A task handed out (eagerly or by a poll): the model's next attempt, with the lease the row holds. */
  private claimed(i: number, task: ActivityTask, before: Snapshot, after: Snapshot): void {
    const model = this.models[i]!;
    expect(task.attempt, "the attempt number").toBe(model.attempt + 1);
    expect(fromJson(task.heartbeatDetails), "the last accepted heartbeat's details").toEqual(model.details);
    const deadline = micros(task.leaseDeadline!);
    expect(deadline).toBeGreaterThanOrEqual(Math.floor((before.nowUs + HEARTBEAT_MS * 1000) / 1000) * 1000);
    expect(deadline).toBeLessThanOrEqual(after.nowUs + HEARTBEAT_MS * 1000);
    this.tokens[i]!.push(task.taskToken);
    model.claimed(this.tokens[i]!.length - 1, deadline);
    if (!this.reaped(i, after)) {
      const row = after.tasks[String(this.seqOf(i))]!;
      expect(row.attempt).toBe(model.attempt);
      expect(row.worker_id).toBe(task.attempt === 1 && this.tokens[i]!.length === 1 && i < this.s.slots ? "eager" : "b");
      model.leaseEndUs = after.leasedUntilUs[String(this.seqOf(i))]!;
      expect(Math.floor(model.leaseEndUs / 1000) * 1000).toBe(deadline);
    }
  }

  private async snap(checkHistory = true): Promise<Snapshot> {
    const [row] = await this.h.sql<
      { now_us: string; tasks: Array<Record<string, unknown>> | null; leases: Array<{ seq: number; us: string | null }> | null; inbox: Snapshot["inbox"] | null; history: unknown }[]
    >`
      select (extract(epoch from now()) * 1000000)::bigint::text as now_us,
             (select jsonb_agg(to_jsonb(t) order by t.seq) from dex.activity_tasks t where t.run_id = ${this.runId}) as tasks,
             (select jsonb_agg(jsonb_build_object('seq', t.seq, 'us', (extract(epoch from t.leased_until) * 1000000)::bigint::text))
              from dex.activity_tasks t where t.run_id = ${this.runId}) as leases,
             (select jsonb_agg(jsonb_build_object('kind', i.kind, 'event', encode(i.event, 'hex'), 'dedup_key', i.dedup_key) order by i.id)
              from dex.inbox i where i.run_id = ${this.runId}) as inbox,
             (select jsonb_agg(jsonb_build_object('sequence', e.sequence, 'kind', e.kind, 'event', encode(e.event, 'hex')) order by e.sequence)
              from dex.history_events e where e.run_id = ${this.runId}) as history`;
    if (checkHistory) expect(row!.history, "the run's history changed while its activities ran").toEqual(this.baseline);
    const tasks: Snapshot["tasks"] = {};
    for (const t of row!.tasks ?? []) tasks[String(t.seq)] = t;
    const leasedUntilUs: Snapshot["leasedUntilUs"] = {};
    for (const l of row!.leases ?? []) leasedUntilUs[String(l.seq)] = l.us === null ? null : Number(l.us);
    return { nowUs: Number(row!.now_us), tasks, leasedUntilUs, inbox: row!.inbox ?? [], history: row!.history };
  }

  private currentLeaseId(i: number): string {
    return leaseIdOf(this.tokens[i]![this.models[i]!.current!]!);
  }

  /** If activity i's row no longer carries the model's lease, the reaper timed it out: check and apply. */
  private reaped(i: number, s: Snapshot): boolean {
    const model = this.models[i]!;
    const row = s.tasks[String(this.seqOf(i))];
    if (model.phase !== "leased" || (row?.lease_id ?? null) === this.currentLeaseId(i)) return false;
    expect(model.leaseEndUs, "an attempt was timed out before its lease ended").toBeLessThanOrEqual(s.nowUs);
    const attempt = model.attempt;
    cover(`reaper: ${model.retries("timeout") ? "retry" : "final"}`);
    if (model.timedOut()) {
      expect(row, "a timed-out attempt with attempts left keeps its task").toBeDefined();
      // Claimed again by a poll in the same action: the claim check takes it from here.
      if (row!.lease_id === null) expect(row!.attempt).toBe(attempt);
      const failure = lastFailure(row);
      expect([failure.kind, failure.timeoutType]).toEqual([FailureKind.TIMEOUT, TimeoutType.HEARTBEAT]);
    } else {
      expect(row, "the last attempt timed out: the task is gone").toBeUndefined();
      this.expectOutcomeInInbox(i, s);
    }
    return true;
  }

  private reapedAll(s: Snapshot): void {
    for (let i = 0; i < this.models.length; i++) this.reaped(i, s);
  }

  /** Exactly one outcome per activity that has one, and it is the model's. */
  private expectOutcomeInInbox(i: number, s: Snapshot): void {
    const seq = this.seqOf(i);
    const rows = s.inbox.filter((r) => r.dedup_key === `activity-result:${seq}`);
    expect(rows, `one outcome of activity ${seq} in the inbox`).toHaveLength(1);
    expect(s.tasks[String(seq)], "an activity with its outcome has no task").toBeUndefined();
    expectOutcome(fromBinary(HistoryEventSchema, Buffer.from(rows[0]!.event, "hex")), seq, this.models[i]!.outcome!);
  }

  private expectInbox(s: Snapshot): void {
    const withOutcome = this.models.flatMap((m, i) => (m.phase === "done" ? [`activity-result:${this.seqOf(i)}`] : []));
    expect(s.inbox.map((r) => r.dedup_key).sort(), "the inbox holds the outcomes the models have, once each").toEqual(withOutcome.sort());
    for (let i = 0; i < this.models.length; i++) if (this.models[i]!.phase === "done") this.expectOutcomeInInbox(i, s);
  }

  /** A rejected call changed nothing, but what the reaper did (checked by reaped). */
  private unchanged(before: Snapshot, after: Snapshot): void {
    const reaped = new Set<string>();
    for (let i = 0; i < this.models.length; i++) if (this.reaped(i, after)) reaped.add(String(this.seqOf(i)));
    const strip = (s: Snapshot) => Object.fromEntries(Object.entries(s.tasks).filter(([seq]) => !reaped.has(seq)));
    expect(strip(after), "a rejected call changed an activity task").toEqual(strip(before));
    this.expectInbox(after);
  }

  private lostToReaper(i: number, code: string, after: Snapshot, what: string): void {
    expect(code, `${what} with the current token`).toBe("NOT_FOUND");
    expect(this.models[i]!.leaseEndUs, `${what} with the current token was refused while its lease was live`).toBeLessThanOrEqual(after.nowUs);
    expect(this.reaped(i, after), `${what} with the current token was refused, and the reaper had not timed the attempt out`).toBe(true);
  }

  private expectRetryScheduled(i: number, after: Snapshot, attempt: number, message: string): void {
    const row = after.tasks[String(this.seqOf(i))];
    expect(row, "a retried activity keeps its task").toBeDefined();
    expect(row!.lease_id, "a failed attempt's lease is dropped").toBeNull();
    expect(row!.attempt).toBe(attempt);
    expect(lastFailure(row).message).toBe(message);
  }

  private async act(i: number, action: ActivityAction): Promise<void> {
    const { h } = this;
    const model = this.models[i]!;
    const before = await this.snap();
    this.reapedAll(before);
    const pick = (ref: Parameters<typeof pickToken>[1]) => pickToken(this.tokens[i]!, ref);
    switch (action.op) {
      case "claim": {
        // Another worker's poll: it takes waiting attempts of any of the run's activities.
        const waiting = this.models.some((m) => m.phase === "waiting");
        const poll = (waitMs: number) => h.worker.pollActivityTasks({ taskQueue: this.activityQueue, workerId: "b", maxTasks: 10, maxWait: ms(waitMs) });
        let tasks: ActivityTask[] = [];
        const deadline = Date.now() + DEFAULT_WAIT_MS;
        if (waiting) {
          while (tasks.length === 0 && Date.now() < deadline) tasks = (await poll(2_000)).tasks;
          expect(tasks.length, "a waiting attempt is handed out").toBeGreaterThan(0);
        } else {
          tasks = (await poll(50)).tasks;
        }
        const after = await this.snap();
        cover(`claim: ${tasks.length} task(s)${waiting ? "" : " while none waited"}`);
        const claimedSeqs = new Set(tasks.map((t) => t.seq));
        for (const task of tasks) {
          expect(task.runId).toBe(this.runId);
          const j = task.seq - 1;
          const m = this.models[j]!;
          if (m.phase === "leased") {
            // Handed out while leased: only after the reaper retried it during the poll.
            expect(m.leaseEndUs, "a task was handed out while its lease was live").toBeLessThanOrEqual(after.nowUs);
            expect(m.timedOut(), "a task was handed out again after its last attempt").toBe(true);
            cover("claim: retried by the reaper during the poll");
          }
          expect(m.phase, "a task was handed out while it had its outcome").toBe("waiting");
          this.claimed(j, task, before, after);
        }
        for (let j = 0; j < this.models.length; j++) if (!claimedSeqs.has(this.seqOf(j))) this.reaped(j, after);
        this.expectInbox(after);
        return;
      }

      case "complete": {
        const picked = pick(action.token);
        if (!picked) return;
        const result = `result of step ${this.step}`;
        const a = await answer(h.worker.completeActivityTask({ taskToken: picked.token, result: json(result) }));
        const after = await this.snap();
        if (!model.isCurrent(picked.index)) {
          cover(`complete: stale (${model.phase})${picked.index === 0 && i < this.s.slots ? ", the eager token" : ""}`);
          expect(a.code, "complete with a token that is not the current attempt's").toBe("NOT_FOUND");
          this.unchanged(before, after);
        } else if (a.code === "OK") {
          cover(`complete: accepted${picked.index === 0 && i < this.s.slots ? " (eager token)" : ""}`);
          model.completed(result);
          this.unchangedButFor(i, before, after);
        } else {
          cover("complete: lost to the reaper");
          this.lostToReaper(i, a.code, after, "complete");
        }
        return;
      }

      case "fail": {
        const picked = pick(action.token);
        if (!picked) return;
        const message = `failure of step ${this.step}`;
        const a = await answer(h.worker.failActivityTask({ taskToken: picked.token, failure: failureOf(action.failure, message) }));
        const after = await this.snap();
        if (!model.isCurrent(picked.index)) {
          cover(`fail: stale (${model.phase})`);
          expect(a.code, "fail with a token that is not the current attempt's").toBe("NOT_FOUND");
          this.unchanged(before, after);
        } else if (a.code === "OK") {
          cover(`fail: accepted, ${model.retries(action.failure) ? "retry" : "final"}`);
          const attempt = model.attempt;
          const retry = model.failed(action.failure, message);
          expect((a as { value: { willRetry: boolean } }).value.willRetry, "willRetry").toBe(retry);
          if (retry) this.expectRetryScheduled(i, after, attempt, message);
          this.unchangedButFor(i, before, after);
        } else {
          cover("fail: lost to the reaper");
          this.lostToReaper(i, a.code, after, "fail");
        }
        return;
      }

      case "heartbeat": {
        const picked = pick(action.token);
        if (!picked) return;
        const details = `details of step ${this.step}`;
        const a = await answer(h.worker.heartbeatActivityTask({ taskToken: picked.token, details: json(details) }));
        const after = await this.snap();
        if (!model.isCurrent(picked.index)) {
          cover(`heartbeat: stale (${model.phase})`);
          expect(a.code).toBe("NOT_FOUND");
          this.unchanged(before, after);
          return;
        }
        if (model.leaseEndUs > after.nowUs) expect(a.code, "heartbeat with the current token, lease live").toBe("OK");
        if (model.leaseEndUs <= before.nowUs) expect(a.code, "heartbeat with the current token after its lease ran out").toBe("NOT_FOUND");
        if (a.code !== "OK") {
          cover("heartbeat: lease ran out");
          this.unchanged(before, after);
          return;
        }
        cover("heartbeat: accepted");
        const deadline = micros((a as { value: { leaseDeadline: Timestamp } }).value.leaseDeadline);
        expect(deadline).toBeLessThanOrEqual(after.nowUs + HEARTBEAT_MS * 1000);
        model.heartbeated(deadline, details);
        if (!this.reaped(i, after)) model.leaseEndUs = after.leasedUntilUs[String(this.seqOf(i))]!;
        return;
      }

      case "race": {
        const picked = pick(action.token);
        if (!picked) return;
        const results = Array.from({ length: action.completes }, (_, k) => `result ${k} of step ${this.step}`);
        const message = `racing failure of step ${this.step}`;
        const answers = await Promise.all([
          ...results.map((r) => answer(h.worker.completeActivityTask({ taskToken: picked.token, result: json(r) }))),
          answer(h.worker.failActivityTask({ taskToken: picked.token, failure: failureOf("retryable", message) })),
        ]);
        const after = await this.snap();
        const codes = answers.map((x) => x.code);
        expect(codes.filter((c) => c !== "OK" && c !== "NOT_FOUND"), "racing calls answer OK or NOT_FOUND").toEqual([]);
        const winners = codes.flatMap((c, k) => (c === "OK" ? [k] : []));
        if (!model.isCurrent(picked.index)) {
          cover("race: stale");
          expect(winners).toEqual([]);
          this.unchanged(before, after);
          return;
        }
        if (model.leaseEndUs > after.nowUs) expect(winners, "exactly one racing call wins").toHaveLength(1);
        expect(winners.length).toBeLessThanOrEqual(1);
        if (winners.length === 0) return this.lostToReaper(i, "NOT_FOUND", after, "racing calls");
        const winner = winners[0]!;
        cover(`race: won by ${winner < results.length ? "a completion" : "the failure"}`);
        if (winner < results.length) model.completed(results[winner]!);
        else {
          const attempt = model.attempt;
          if (model.failed("retryable", message)) this.expectRetryScheduled(i, after, attempt, message);
        }
        this.unchangedButFor(i, before, after);
        return;
      }

      case "expire": {
        if (model.phase !== "leased") return;
        const leaseId = this.currentLeaseId(i);
        const after = await waitFor(
          async () => {
            const s = await this.snap();
            return (s.tasks[String(this.seqOf(i))]?.lease_id ?? null) !== leaseId ? s : undefined;
          },
          { intervalMs: 25, message: "the reaper to time out the expired attempt" },
        );
        this.reapedAll(after);
        this.expectInbox(after);
        return;
      }

      case "leaseEnds": {
        if (model.phase !== "leased") return;
        const leaseEnd = model.leaseEndUs;
        const after = await waitFor(
          async () => {
            const s = await this.snap();
            return s.nowUs >= leaseEnd ? s : undefined;
          },
          { intervalMs: 10, message: "the lease to run out" },
        );
        this.reapedAll(after);
        if (action.then === "nothing") return;
        cover(`leaseEnds then ${action.then}${model.phase === "leased" ? "" : " (already reaped)"}`);
        this.step++;
        return this.act(i, action.then === "fail" ? { op: "fail", token: "newest", failure: "retryable" } : { op: action.then, token: "newest" });
      }

      case "forged": {
        const picked = pick(action.token);
        if (!picked) return;
        const forged = garbleToken(picked.token, "activity", action.garble, action.noise);
        const a = await answer<unknown>(
          action.call === "complete"
            ? h.worker.completeActivityTask({ taskToken: forged, result: json("forged") })
            : action.call === "fail"
              ? h.worker.failActivityTask({ taskToken: forged, failure: failureOf("nonRetryable", "forged") })
              : h.worker.heartbeatActivityTask({ taskToken: forged, details: json("forged") }),
        );
        const after = await this.snap();
        expect(a.code, `${action.call} with a token garbled by ${action.garble}`).toBe(expectedForGarble(action.garble));
        cover(`forged: ${expectedForGarble(action.garble)}`);
        this.unchanged(before, after);
        return;
      }
    }
  }

  /** An accepted call on activity i changed only activity i (and the inbox, checked against the models). */
  private unchangedButFor(i: number, before: Snapshot, after: Snapshot): void {
    const seq = String(this.seqOf(i));
    const reaped = new Set<string>([seq]);
    for (let j = 0; j < this.models.length; j++) if (j !== i && this.reaped(j, after)) reaped.add(String(this.seqOf(j)));
    const strip = (s: Snapshot) => Object.fromEntries(Object.entries(s.tasks).filter(([k]) => !reaped.has(k)));
    expect(strip(after), "an accepted call changed another activity's task").toEqual(strip(before));
    this.expectInbox(after);
  }

  private async finish(): Promise<void> {
    const { h } = this;
    const s = await this.snap();
    this.reapedAll(s);
    this.expectInbox(s);
    const done = this.models.flatMap((m, i) => (m.phase === "done" ? [i] : []));
    cover(`outcomes: ${done.length} of ${this.models.length}`);
    if (done.length === 0) {
      await h.client.terminateRun({ run: byRunId(this.runId), reason: "scenario over" });
      const { events } = await h.client.getRunHistory({ run: byRunId(this.runId) });
      expect(events.filter((e) => e.attributes.case === "activityCompleted" || e.attributes.case === "activityFailed")).toEqual([]);
      return;
    }
    // The outcomes reach history with the run's next workflow task, each exactly once.
    let task;
    const deadline = Date.now() + DEFAULT_WAIT_MS;
    while (!task && Date.now() < deadline) {
      ({ tasks: [task] } = await h.worker.pollWorkflowTasks({ taskQueue: this.workflowQueue, workerId: this.workflowWorker, maxTasks: 1, maxWait: ms(2_000) }));
    }
    expect(task?.runId, "the outcomes give the run a workflow task").toBe(this.runId);
    const seqs = task!.newEvents.map((e) => (e.attributes.value as { seq: number }).seq);
    expect(new Set(seqs).size, "each outcome once in the task's new events").toBe(seqs.length);
    for (const event of task!.newEvents) {
      const seq = (event.attributes.value as { seq: number }).seq;
      const m = this.models[seq - 1]!;
      if (m.phase !== "done") {
        // The reaper ended a leased attempt for good after the last snapshot.
        expect(m.phase).toBe("leased");
        expect(m.timedOut(), "an outcome without a final attempt").toBe(false);
      }
      expectOutcome(event, seq, m.outcome!);
    }
    for (const i of done) expect(seqs, `activity ${this.seqOf(i)}'s outcome is handed out`).toContain(this.seqOf(i));
    await h.worker.completeWorkflowTask({ taskToken: task!.taskToken, commands: [completeRun("done")] });
    const { events } = await h.client.getRunHistory({ run: byRunId(this.runId) });
    expect(events.map((e) => Number(e.sequence)), "contiguous history").toEqual(events.map((_, k) => k + 1));
    const outcomes = events.filter((e) => e.attributes.case === "activityCompleted" || e.attributes.case === "activityFailed");
    expect(outcomes.map((e) => (e.attributes.value as { seq: number }).seq).sort(), "each outcome in history exactly once").toEqual([...seqs].sort());
  }
}

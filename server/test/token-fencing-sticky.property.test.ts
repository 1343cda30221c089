/**
 * Token fencing under sticky routing, property-based (issue 12; decision 0009): two or three
 * workers with different worker ids poll one queue, with a short sticky fallback (FALLBACK_MS),
 * through random sequences of polls (one worker, or all at once), completions, failures, racing
 * duplicate completions, inputs arriving, and workers disappearing (they stop polling: the run's
 * owner gone, its tasks reach another worker after the fallback). Against the real gRPC API of a
 * real server on a real Postgres, with real time (the fallback passes for real). After every
 * action the answer and the database are checked against a small model:
 * - A STALE TOKEN NEVER WRITES: complete and fail with any token but the current lease's answer
 *   NOT_FOUND and change nothing (the task row, inbox, run row and history are snapshotted before
 *   and after); of two completions racing with the current token exactly one is accepted.
 * - EACH TASK'S BLOCK IS APPENDED EXACTLY ONCE and the history is contiguous: after every accepted
 *   completion, and at the end, the history is exactly the model's (the inputs handed out, then the
 *   marker with the attempt and worker that claimed the task), numbered from 1 without gaps.
 * - ROUTING: a claim that hands out a fresh task (attempt 0) of a run sticky to another worker
 *   happens no sooner than FALLBACK_MS after the task became available (database clock: the claim's
 *   task_time against the row's visible_at); a worker that may take the task (its owner, any worker
 *   once it failed or the fallback passed) gets it when it polls; the cache path (no history) goes
 *   only to the owner on attempt 1, and every other claim carries the full history; concurrent
 *   polls hand the task to one worker at most. A long poll of a worker allowed to take the task
 *   once the fallback ends gets it within its wait (the wake armed for the fallback's end).
 * Each property run gets a fresh workflow run on a shared queue and ends it (terminate), so any
 * other run's task in an answer fails the scenario.
 *
 * Reproduce a failure with the seed (and path) fast-check prints: DEX_FC_SEED=<seed>
 * DEX_FC_PATH=<path> pnpm vitest run server/test/token-fencing-sticky.property.test.ts;
 * DEX_FC_RUNS changes the number of runs, DEX_FC_NO_SHRINK=1 stops at the first failure.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { RunStatus, TaskQueueType, type HistoryEvent } from "@dex/proto";
import { leaseIdOf } from "./token-fencing.model.js";
import { byRunId, json, startHarness, uniqueId, type Harness } from "./helpers.js";
import { answer, cover, fcParameters, micros, ms, printCoverage } from "./support/fencing-calls.js";

const FALLBACK_MS = 250;
const RUNS = Number(process.env.DEX_FC_RUNS ?? 60);
/** A poll that may come back empty; long enough for the claim, too short to wait out much. */
const SHORT_WAIT_MS = 30;
/** A poll that must get the task: the fallback (or a back-off) passes well within it. */
const LONG_WAIT_MS = 10_000;
/** Bounds the whole property, shrinking included (a failure found before it is still reported). */
const PROPERTY_TIME_LIMIT_MS = 75_000;

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/** The newest token, or the i-th of the scenario's tokens (taken modulo how many there are). */
type TokenRef = "newest" | number;
type Action =
  | { op: "poll"; worker: number; long: boolean }
  | { op: "pollAll" }
  | { op: "complete"; token: TokenRef }
  | { op: "fail"; token: TokenRef }
  | { op: "race"; token: TokenRef }
  | { op: "sendEvent" }
  | { op: "disappear"; worker: number };

const tokenRef: fc.Arbitrary<TokenRef> = fc.oneof({ weight: 3, arbitrary: fc.constant("newest" as const) }, { weight: 1, arbitrary: fc.nat(7) });
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant("poll" as const), worker: fc.nat(2), long: fc.boolean() }) },
  { weight: 2, arbitrary: fc.constant({ op: "pollAll" as const }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant("complete" as const), token: tokenRef }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("fail" as const), token: tokenRef }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("race" as const), token: tokenRef }) },
  { weight: 3, arbitrary: fc.constant({ op: "sendEvent" as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("disappear" as const), worker: fc.nat(2) }) },
);
/**
 * `owner`: the worker that claims and completes the run's first task before the actions, so that
 * every scenario starts with a run sticky to a worker and an input waiting (its next task).
 */
const scenario = fc.record({ workers: fc.constantFrom(2, 3), owner: fc.nat(2), actions: fc.array(action, { minLength: 1, maxLength: 20 }) });
type Scenario = { workers: number; owner: number; actions: Action[] };

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

type ModelEvent = { case: "runStarted" } | { case: "externalEventReceived"; eventId: string } | { case: "workflowTaskCompleted"; attempt: number; workerId: string };

class StickyModel {
  /** Every token handed out, in order, with who claimed it and the attempt it names. */
  readonly tokens: Array<{ token: Uint8Array; workerId: string; attempt: number }> = [];
  /** Index of the token of the live lease, if the task is leased. */
  current: number | undefined;
  /** The run's workflow task row, if any: the attempts counted so far (the claim counts one). */
  task: { attempt: number } | undefined = { attempt: 0 };
  handedOut: string[] = [];
  inbox: string[] = [];
  history: ModelEvent[] = [{ case: "runStarted" }];
  /** The worker that completed the last task: the run is sticky to it (runs.sticky_worker_id). */
  owner: string | undefined;
  readonly gone = new Set<string>();

  pick(ref: TokenRef): number | undefined {
    if (this.tokens.length === 0) return undefined;
    return ref === "newest" ? this.tokens.length - 1 : ref % this.tokens.length;
  }

  /**
   * Whether the claim of `workerId` may take the task at `atUs` (database clock), the row having
   * been available since `visibleUs`: decision 0009's rule.
   */
  mayTake(workerId: string, visibleUs: number, atUs: number): boolean {
    if (!this.task || this.current !== undefined || visibleUs > atUs) return false;
    return this.task.attempt > 0 || this.owner === undefined || this.owner === workerId || visibleUs + FALLBACK_MS * 1000 <= atUs;
  }

  claimed(token: Uint8Array, workerId: string): void {
    this.task!.attempt++;
    this.tokens.push({ token, workerId, attempt: this.task!.attempt });
    this.current = this.tokens.length - 1;
    this.handedOut = [...this.inbox];
  }

  completed(): void {
    const { workerId, attempt } = this.tokens[this.current!]!;
    this.history.push(...this.handedOut.map((eventId) => ({ case: "externalEventReceived" as const, eventId })));
    this.history.push({ case: "workflowTaskCompleted", attempt, workerId });
    this.inbox = this.inbox.slice(this.handedOut.length);
    this.owner = workerId;
    this.current = undefined;
    // Inputs that arrived while the task ran get the run its next task (a new row: attempt 0).
    this.task = this.inbox.length > 0 ? { attempt: 0 } : undefined;
  }

  failed(): void {
    this.current = undefined;
  }

  eventSent(eventId: string): void {
    this.inbox.push(eventId);
    this.task ??= { attempt: 0 };
  }
}

// ---------------------------------------------------------------------------------------------
// Playing a scenario
// ---------------------------------------------------------------------------------------------

interface Snapshot {
  nowUs: number;
  /** The task row's visible_at in µs (when not leased: since when it can be handed out). */
  visibleUs: number | null;
  task: Record<string, unknown> | null;
  inbox: unknown;
  run: Record<string, unknown>;
  history: HistoryEvent[];
}

type PolledTask = Awaited<ReturnType<Harness["worker"]["pollWorkflowTasks"]>>["tasks"][number];

class ScenarioRun {
  private readonly model = new StickyModel();
  private readonly workers: string[];
  private runId = "";
  private step = 0;

  constructor(
    private readonly h: Harness,
    private readonly scenario: Scenario,
    private readonly queue: string,
  ) {
    this.workers = Array.from({ length: scenario.workers }, (_, i) => `sticky-w${i}`);
  }

  async run(): Promise<void> {
    const { runId } = await this.h.client.startWorkflow({ workflowName: "sticky-fencing", instanceId: uniqueId("sfence"), taskQueue: this.queue });
    this.runId = runId;
    try {
      const prelude: Action[] = [{ op: "poll", worker: this.scenario.owner, long: true }, { op: "complete", token: "newest" }, { op: "sendEvent" }];
      for (const a of [...prelude, ...this.scenario.actions]) {
        this.step++;
        try {
          await this.act(a);
        } catch (err) {
          throw this.annotate(err, `step ${this.step} ${JSON.stringify(a)}`);
        }
      }
      await this.finish().catch((err: unknown) => {
        throw this.annotate(err, "at the end");
      });
    } finally {
      await this.h.client.terminateRun({ run: byRunId(this.runId), reason: "scenario over" }).catch(() => undefined);
    }
  }

  private annotate(err: unknown, where: string): Error {
    const m = this.model;
    const state = `current ${m.current}, task ${JSON.stringify(m.task)}, owner ${m.owner}, gone ${[...m.gone].join(",")}, inbox ${m.inbox.length}, ${m.tokens.length} tokens, history ${m.history.length}`;
    return new Error(`run ${this.runId}, ${where} (${state}): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }

  private async snap(): Promise<Snapshot> {
    const [row] = await this.h.sql<{ now_us: string; visible_us: string | null; task: Record<string, unknown> | null; inbox: unknown; run: Record<string, unknown> }[]>`
      select (extract(epoch from now()) * 1000000)::bigint::text as now_us,
             (select (extract(epoch from t.visible_at) * 1000000)::bigint::text from dex.workflow_tasks t where t.run_id = ${this.runId}) as visible_us,
             (select to_jsonb(t) from dex.workflow_tasks t where t.run_id = ${this.runId}) as task,
             coalesce((select jsonb_agg(jsonb_build_object('id', i.id, 'event', encode(i.event, 'hex')) order by i.id)
                       from dex.inbox i where i.run_id = ${this.runId}), '[]'::jsonb) as inbox,
             (select to_jsonb(r) from dex.runs r where r.id = ${this.runId}) as run`;
    const { events } = await this.h.client.getRunHistory({ run: byRunId(this.runId) });
    return {
      nowUs: Number(row!.now_us),
      visibleUs: row!.visible_us === null ? null : Number(row!.visible_us),
      task: row!.task,
      inbox: row!.inbox,
      run: row!.run,
      history: events,
    };
  }

  /** A rejected call (or a poll that handed nothing out) leaves everything as it was. */
  private unchanged(before: Snapshot, after: Snapshot, what: string): void {
    const { nowUs: _b, ...b } = before;
    const { nowUs: _a, ...a } = after;
    expect(a, `${what} changed the run, its task, inbox or history`).toEqual(b);
  }

  /** History is exactly the model's (plus `extra`), numbered from 1 without gaps. */
  private expectHistory(events: HistoryEvent[], extra: string[] = []): void {
    expect(events.map((e) => Number(e.sequence)), "history sequence numbers run from 1 without gaps").toEqual(events.map((_, i) => i + 1));
    expect(events.map((e) => e.attributes.case)).toEqual([...this.model.history.map((e) => e.case), ...extra]);
    this.model.history.forEach((expected, i) => {
      const a = events[i]!.attributes;
      if (expected.case === "externalEventReceived" && a.case === "externalEventReceived") expect(a.value.eventId).toBe(expected.eventId);
      if (expected.case === "workflowTaskCompleted" && a.case === "workflowTaskCompleted") {
        expect([a.value.attempt, a.value.workerId], `the marker at ${i + 1}: attempt and worker`).toEqual([expected.attempt, expected.workerId]);
      }
    });
  }

  private expectTask(s: Snapshot): void {
    const { task, current, tokens } = this.model;
    if (!task) {
      expect(s.task, "the run has no workflow task").toBeNull();
      return;
    }
    expect(s.task, "the run has a workflow task").not.toBeNull();
    expect(s.task!.attempt, "the task's counted attempts").toBe(task.attempt);
    expect(s.task!.lease_id ?? null, "the task's lease").toBe(current === undefined ? null : leaseIdOf(tokens[current]!.token));
  }

  private poll(workerId: string, waitMs: number) {
    return this.h.worker.pollWorkflowTasks({ taskQueue: this.queue, workerId, maxTasks: 1, maxWait: ms(waitMs) });
  }

  /** Checks a task a claim handed out to `workerId` against the model and the routing rule; records its token. */
  private claimedBy(workerId: string, task: PolledTask, before: Snapshot): void {
    const { model } = this;
    expect(task.runId, "only this scenario's run has tasks on the queue").toBe(this.runId);
    // task_time reaches the worker in whole milliseconds (a JS Date): the claim was within the next 1 ms.
    const atUs = micros(task.taskTime!) + 999;
    expect(model.mayTake(workerId, before.visibleUs!, atUs), `routing: ${workerId} may take the task at its claim (available since ${before.visibleUs}, claimed ${atUs})`).toBe(true);
    expect(task.attempt, "the attempt number").toBe(model.task!.attempt + 1);
    expect(task.historyLength).toBe(BigInt(model.history.length));
    const cached = task.attempt === 1 && model.owner === workerId;
    cover(
      task.attempt > 1 ? "claim: a retry, any worker" : model.owner === undefined ? "claim: first task"
      : cached ? "claim: the owner, from its cache" : "claim: another worker, after the fallback",
    );
    expect(task.history.length, "history is inlined unless this worker is the owner on attempt 1").toBe(cached ? 0 : model.history.length);
    if (!cached) this.expectHistory(task.history);
    expect(
      task.newEvents.map((e) => [e.sequence, e.attributes.case === "externalEventReceived" ? e.attributes.value.eventId : e.attributes.case]),
      "the new events: the inbox, numbered after history",
    ).toEqual(model.inbox.map((id, i) => [BigInt(model.history.length + 1 + i), id]));
    model.claimed(task.taskToken, workerId);
  }

  private live(worker: number): string | undefined {
    const id = this.workers[worker % this.workers.length]!;
    return this.model.gone.has(id) ? undefined : id;
  }

  private async act(a: Action): Promise<void> {
    const { h, model } = this;
    const before = await this.snap();
    this.expectTask(before);
    switch (a.op) {
      case "poll": {
        const workerId = this.live(a.worker);
        if (!workerId) return;
        // Long: the task is there and will be this worker's by the end of the fallback at the latest.
        const long = a.long && model.task !== undefined && model.current === undefined;
        const { tasks } = await this.poll(workerId, long ? LONG_WAIT_MS : SHORT_WAIT_MS);
        const after = await this.snap();
        cover(`poll ${long ? "long" : "short"}: ${tasks.length === 0 ? "nothing" : "a task"}`);
        if (tasks.length === 0) {
          expect(long, "a long poll gets a task that is free, at the latest once the fallback has passed").toBe(false);
          expect(before.visibleUs === null ? false : model.mayTake(workerId, before.visibleUs, before.nowUs), `${workerId} may take the task: its poll must get it`).toBe(false);
          this.unchanged(before, after, "a poll that handed nothing out");
          return;
        }
        expect(tasks).toHaveLength(1);
        this.claimedBy(workerId, tasks[0]!, before);
        this.expectTask(after);
        return;
      }

      case "pollAll": {
        const workerIds = this.workers.filter((w) => !model.gone.has(w));
        const answers = await Promise.all(workerIds.map((w) => this.poll(w, SHORT_WAIT_MS)));
        const after = await this.snap();
        const got = answers.flatMap((r, i) => r.tasks.map((t) => ({ workerId: workerIds[i]!, task: t })));
        cover(`poll all: ${got.length === 0 ? "nothing" : "a task"}`);
        expect(got.length, "concurrent polls hand the task to one worker at most").toBeLessThanOrEqual(1);
        if (got.length === 0) {
          const someone = before.visibleUs !== null && workerIds.some((w) => model.mayTake(w, before.visibleUs!, before.nowUs));
          expect(someone, "a worker that may take the task polled: one of the polls must get it").toBe(false);
          this.unchanged(before, after, "polls that handed nothing out");
          return;
        }
        this.claimedBy(got[0]!.workerId, got[0]!.task, before);
        this.expectTask(after);
        return;
      }

      case "complete":
      case "fail": {
        const index = model.pick(a.token);
        if (index === undefined) return;
        const { token } = model.tokens[index]!;
        const result = await answer<unknown>(
          a.op === "complete"
            ? h.worker.completeWorkflowTask({ taskToken: token, commands: [] })
            : h.worker.failWorkflowTask({ taskToken: token, failure: { message: `failure of step ${this.step}` } }),
        );
        const after = await this.snap();
        cover(`${a.op}: ${index === model.current ? "current" : "stale"} token`);
        if (index !== model.current) {
          expect(result.code, `${a.op} with a stale token`).toBe("NOT_FOUND");
          this.unchanged(before, after, `${a.op} with a stale token`);
          return;
        }
        expect(result.code, `${a.op} with the current token`).toBe("OK");
        if (a.op === "complete") model.completed();
        else model.failed();
        this.expectHistory(after.history);
        this.expectTask(after);
        return;
      }

      case "race": {
        const index = model.pick(a.token);
        if (index === undefined) return;
        const { token } = model.tokens[index]!;
        const results = await Promise.all([0, 1].map(() => answer(h.worker.completeWorkflowTask({ taskToken: token, commands: [] }))));
        const after = await this.snap();
        const codes = results.map((r) => r.code).sort();
        cover(`race: ${index === model.current ? "current" : "stale"} token`);
        if (index !== model.current) {
          expect(codes, "racing completions with a stale token").toEqual(["NOT_FOUND", "NOT_FOUND"]);
          this.unchanged(before, after, "racing completions with a stale token");
          return;
        }
        expect(codes, "racing completions with the current token: exactly one wins").toEqual(["NOT_FOUND", "OK"]);
        model.completed();
        this.expectHistory(after.history);
        this.expectTask(after);
        return;
      }

      case "sendEvent": {
        const eventId = `event-${this.step}`;
        const result = await answer(h.client.sendEvent({ run: byRunId(this.runId), eventId, payload: json(this.step) }));
        expect(result.code).toBe("OK");
        model.eventSent(eventId);
        const after = await this.snap();
        this.expectHistory(after.history);
        this.expectTask(after);
        return;
      }

      case "disappear": {
        const workerId = this.live(a.worker);
        const holder = model.current === undefined ? undefined : model.tokens[model.current]!.workerId;
        // One worker stays; a worker holding the lease would block the task for the whole 10 s lease.
        if (!workerId || workerId === holder || this.workers.length - model.gone.size <= 1) return;
        model.gone.add(workerId);
        cover("a worker disappeared");
        return;
      }
    }
  }

  private async finish(): Promise<void> {
    const s = await this.snap();
    this.expectTask(s);
    this.expectHistory(s.history);
    await this.h.client.terminateRun({ run: byRunId(this.runId), reason: "scenario over" });
    const { events, status } = await this.h.client.getRunHistory({ run: byRunId(this.runId) });
    expect(status).toBe(RunStatus.TERMINATED);
    this.expectHistory(events, ["runTerminated"]);
  }
}

describe("task tokens fence every outcome under sticky routing (property-based)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ stickyFallbackMs: FALLBACK_MS, workflowTaskRetry: { initialMs: 20, maxMs: 50 }, maxPollWaitMs: 20_000 });
  });
  afterAll(async () => {
    printCoverage();
    await h?.close();
  });

  it("stale tokens never write, each block is appended once, routing keeps to the rule", { timeout: 180_000 }, async ({ signal }) => {
    const queue = uniqueId("sticky-fencing").slice(0, 60);
    await h.queues.createTaskQueue({ name: queue, type: TaskQueueType.WORKFLOW });
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        signal.throwIfAborted();
        await new ScenarioRun(h, s, queue).run();
      }),
      fcParameters(RUNS, PROPERTY_TIME_LIMIT_MS),
    );
  });
});

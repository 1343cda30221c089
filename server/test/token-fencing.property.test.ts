/**
 * Token fencing, property-based (issue 5, scenario 10): over random sequences of claims,
 * completions, failures, heartbeats, real lease expiries, reclaims, concurrent duplicate
 * completions and forged tokens, against the real gRPC API of a real server on a real Postgres,
 * THE FIRST VALID RESULT WINS, EVERY OTHER CALL IS REJECTED, AND A REJECTED CALL CHANGES NOTHING.
 *
 * How: fast-check generates a scenario; a model (token-fencing.model.ts) says which token is valid
 * and whether the task has an outcome; after every action the server's answer (status code, and
 * what an accepted call returns) is checked against the model, and a snapshot of everything the
 * call could write (the task row, the run's inbox, its history, for workflow tasks the run row)
 * taken before and after a rejected call must be equal. At the end the history must be exactly
 * the model's: contiguous sequence numbers from 1, one activity outcome with the attempt (and
 * result or failure) of the first valid result. One server and database serve the whole file;
 * each property run (scenario) gets a fresh workflow run, and ends it (complete or terminate), so
 * the scenarios of a property can share its queues (any other run's task in a poll's answer
 * fails the scenario; it cannot pass unnoticed). Real time only: leases expire by waiting for
 * them (conditions polled with a deadline on the database clock), never by editing rows.
 *
 * The rules the model encodes (docs/worker-protocol.md "Tokens and leases", "Activities",
 * "Activity timeouts and heartbeats", "A completion refused because inputs arrived"; and the code
 * in server/src/engine/{activity-tasks,workflow-tasks,completion}.ts):
 * - A token names one attempt (lease id + lock version). Complete, fail and heartbeat are accepted
 *   only while the task row still carries that lease; otherwise NOT_FOUND, nothing written. Each
 *   claim makes a new lease, so the token of every earlier attempt is dead from then on; an ended
 *   task (deleted row) accepts no token at all.
 * - A token that does not decode (truncated, extended, empty, unknown version, the other kind of
 *   task, a bad queue name, seq 0, garbage) answers INVALID_ARGUMENT; one that decodes but names
 *   no current attempt (another lease id, version, run, queue or seq) answers NOT_FOUND.
 * - Activity task: the lease is the heartbeat timeout (HEARTBEAT_MS here; start-to-close is far
 *   away). A heartbeat with the current token extends the lease and stores its details (the next
 *   attempt receives the last accepted heartbeat's details) if the lease has not run out; once it
 *   ran out, the heartbeat answers NOT_FOUND even before the reaper came ("that attempt belongs to
 *   the reaper"). A COMPLETION OR FAILURE with the current token after the lease ran out but
 *   before the reaper handled it IS ACCEPTED (the row still carries the lease; the docs' rule is
 *   the lease id, not the clock), and wins over the reaper. The reaper (about every second) turns
 *   an expired lease into a failed attempt (TIMEOUT / HEARTBEAT) that goes through the retry
 *   policy; until then the task cannot be claimed again. Because the reaper runs whenever it
 *   likes, the model takes the lease end into account: with the database clock read before and
 *   after each call, a call is certain to meet a live lease when the lease ends after the "after"
 *   clock, certain to meet an ended one when it ended before the "before" clock, and in between
 *   either answer is accepted provided the state after the call shows which one happened (the
 *   reaper's outcome, checked in full, or the call's).
 * - FailActivityTask: retried (willRetry, no outcome, the lease dropped, next attempt after the
 *   back-off) unless non_retryable, its type is in non_retryable_error_types, or maximum_attempts
 *   is reached; otherwise the final activity_failed goes to the inbox. CompleteActivityTask puts
 *   activity_completed in the inbox. An activity's outcome reaches history only when the run's
 *   next workflow task completes (the end of each run checks that), so the history must not change
 *   at all while the activity runs.
 * - Workflow task: fail with the current token backs off (attempt counted); complete appends the
 *   block (handed-out inputs, the marker with the attempt and worker, the commands); complete_run
 *   while external events the task was not given wait in the inbox answers ABORTED, writes nothing
 *   and hands the task back at once without counting the attempt (its token is dead). A completed
 *   task's row is gone, so its token cannot complete the run's next task (same run, same lock
 *   version 1, another lease id). The workflow task lease is a fixed 10 s (WORKFLOW_TASK_LEASE_MS;
 *   there is no option and no injectable clock), far longer than a scenario, so real expiry is
 *   covered by "aged" scenarios: runs whose first task was claimed in beforeAll, more than 10 s
 *   before the workflow property starts (it waits, on the database clock, until every such lease
 *   has ended). There, the expired token still completes or fails the task until it is claimed
 *   again, and the claim hands out attempt 2 and kills the old token.
 * - Concurrent duplicates ("race"): of several completions/failures sent at once with one valid
 *   token exactly one is accepted (at most one if the lease may have ended meanwhile).
 * - Claims: a poll hands the task out (attempt = previous + 1; for an activity with the last
 *   accepted heartbeat's details, for a workflow task with the inbox as new events numbered after
 *   history) exactly when the model says it is available: an activity waiting for its next attempt
 *   (after a retryable failure or the reaper's time-out), a workflow task not leased or whose lease
 *   ran out. Otherwise the poll answers nothing and changes nothing.
 * Once the activity has its outcome (or the run ended) a scenario plays at most AFTER_THE_END more
 * actions: they all must be rejected, and more of them only cost time.
 *
 * Reproduce a failure with the seed (and path) fast-check prints: DEX_FC_SEED=<seed>
 * DEX_FC_PATH=<path> pnpm vitest run server/test/token-fencing.property.test.ts. DEX_FC_RUNS
 * changes the number of runs of each property, DEX_FC_NO_SHRINK=1 stops at the first failure
 * (shrinking replays scenarios in real time, lease expiries included: it can take a minute or
 * two, and is cut off after PROPERTY_TIME_LIMIT_MS), DEX_FC_COVERAGE=1 prints how often each
 * path (accepted, stale, lost to the reaper, ...) was taken and how long each kind of action took.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { fromBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  codeName,
  DexError,
  FailureKind,
  FailureSchema,
  HistoryEventSchema,
  PayloadSchema,
  RunStatus,
  TaskQueueType,
  TimeoutType,
  type ActivityTaskReportResult,
  type HistoryEvent,
  type Payload,
} from "@dex/proto";
import { DEFAULT_WAIT_MS, waitFor } from "@dex/testing";
import {
  activityScenario,
  ActivityModel,
  expectedForGarble,
  FATAL_TYPE,
  garbleToken,
  leaseIdOf,
  pickToken,
  workflowScenario,
  WorkflowModel,
  type ActivityAction,
  type ActivityOutcome,
  type ActivityScenario,
  type FailureChoice,
  type WorkflowAction,
  type WorkflowScenario,
} from "./token-fencing.model.js";
import { byRunId, completeRun, fromJson, json, scheduleActivity, startHarness, uniqueId, type Harness } from "./helpers.js";

/** The activity's lease (heartbeat timeout): short, so that expiries are real and cheap. */
const HEARTBEAT_MS = 500;
const START_TO_CLOSE_MS = 120_000;
const RETRY_INTERVAL_MS = 10;
const ACTIVITY_RUNS = Number(process.env.DEX_FC_RUNS ?? 35);
/** Workflow scenarios are cheap (no real-time waits but the aged leases, prepared once). */
const WORKFLOW_RUNS = Number(process.env.DEX_FC_RUNS ?? 50);
/**
 * Runs prepared for aged workflow scenarios (half of the scenarios ask for one). Once they are
 * used up, aged scenarios are skipped (fc.pre) and fast-check draws others.
 */
const AGED_RUNS = Math.ceil(WORKFLOW_RUNS / 2);
/** Actions still played once the activity has its outcome, or the run has ended. */
const AFTER_THE_END = 3;
/** Bounds the whole property, shrinking included (a failure found before it is still reported). */
const PROPERTY_TIME_LIMIT_MS = 100_000;

const ms = (n: number) => ({ seconds: BigInt(Math.floor(n / 1000)), nanos: (n % 1000) * 1e6 });
const micros = (t: Timestamp) => Number(t.seconds) * 1e6 + Math.floor(t.nanos / 1000);
const fcParameters = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns,
  interruptAfterTimeLimit: PROPERTY_TIME_LIMIT_MS,
  ...(process.env.DEX_FC_SEED ? { seed: Number(process.env.DEX_FC_SEED) } : {}),
  ...(process.env.DEX_FC_PATH ? { path: process.env.DEX_FC_PATH } : {}),
  ...(process.env.DEX_FC_NO_SHRINK ? { endOnFailure: true } : {}),
});

/** How often each interesting path was taken; printed with DEX_FC_COVERAGE=1. */
const coverage = new Map<string, number>();
const timings = new Map<string, number[]>();
function timing(label: string, ms: number): void {
  if (!timings.has(label)) timings.set(label, []);
  timings.get(label)!.push(ms);
}
function cover(label: string): void {
  coverage.set(label, (coverage.get(label) ?? 0) + 1);
}

type Answer<T> = { code: "OK"; value: T } | { code: string; message: string };

/** The call's answer: OK with its value, or the DexError's code (anything else is a test error). */
async function answer<T>(promise: Promise<T>): Promise<Answer<T>> {
  try {
    return { code: "OK", value: await promise };
  } catch (err) {
    if (err instanceof DexError) return { code: err.code, message: err.message };
    throw err;
  }
}

/**
 * An activity outcome reported through ReportActivityTasks (decision 0011): the item's answer in
 * the unary call's shape, so both paths meet the same model. Odd steps report this way.
 */
async function reportItems(h: Harness, outcomes: ReportOutcome[]): Promise<Array<Answer<{ willRetry: boolean }>>> {
  const call = await answer(h.worker.reportActivityTasks({ items: outcomes.map((outcome) => ({ outcome })) }));
  if (call.code !== "OK") return outcomes.map(() => call as Answer<{ willRetry: boolean }>);
  const { results } = (call as { value: { results: ActivityTaskReportResult[] } }).value;
  expect(results, "one result per item").toHaveLength(outcomes.length);
  return results.map((r) => (r.code === 0 ? { code: "OK", value: { willRetry: r.fail?.willRetry ?? false } } : { code: codeName(r.code), message: r.message }));
}

type ReportOutcome =
  | { case: "complete"; value: { taskToken: Uint8Array; result: ReturnType<typeof json> } }
  | { case: "fail"; value: { taskToken: Uint8Array; failure: ReturnType<typeof failureOf> } };

function ok<T>(a: Answer<T>, what: string): T {
  if (a.code !== "OK") throw new Error(`${what}: expected OK, got ${a.code} (${(a as { message: string }).message})`);
  return (a as { value: T }).value;
}

function decodeInboxEvent(hex: string): HistoryEvent {
  return fromBinary(HistoryEventSchema, Buffer.from(hex, "hex"));
}

/** The bytes of a bytea column as to_jsonb prints them ("\x0a0b..."). */
function byteaHex(value: unknown): string | undefined {
  return typeof value === "string" ? value.replace(/^\\x/, "") : undefined;
}

function expectContiguous(events: HistoryEvent[]): void {
  expect(
    events.map((e) => Number(e.sequence)),
    "history sequence numbers run from 1 without gaps",
  ).toEqual(events.map((_, i) => i + 1));
}

/**
 * Long-polls until a task comes or DEFAULT_WAIT_MS has passed: a task the model says is available
 * must come by then (a single poll may come back empty on a busy machine). The deadline only
 * bounds how long a missing task takes to fail the property.
 */
async function pollForTask<T>(poll: () => Promise<{ tasks: T[] }>): Promise<T[]> {
  const deadline = Date.now() + DEFAULT_WAIT_MS;
  for (;;) {
    const { tasks } = await poll();
    if (tasks.length > 0 || Date.now() > deadline) return tasks;
  }
}

async function createQueue(h: Harness, type: TaskQueueType, prefix: string): Promise<string> {
  const name = uniqueId(prefix).replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);
  await h.queues.createTaskQueue({ name, type });
  return name;
}

/** A run's first workflow task claimed, kept until its 10 s lease has run out (aged scenarios). */
interface AgedRun {
  runId: string;
  queue: string;
  token: Uint8Array;
  workerId: string;
  leaseEndUs: number;
}

describe("task tokens fence every outcome (property-based)", () => {
  // Each property has its own server and database: one cut off by its timeout leaves nothing
  // behind that the other reads, and its loop stops at the test's abort signal.
  let activities: Harness;
  let workflows: Harness;
  const agedRuns: AgedRun[] = [];

  beforeAll(async () => {
    const options = { workflowTaskRetry: { initialMs: 20, maxMs: 50 } };
    // Sticky routing's fallback never passes within a property: whether a claim may take a task
    // kept for the other worker is then the model's rule alone, not a race with the clock.
    [activities, workflows] = await Promise.all([startHarness(options), startHarness({ ...options, stickyFallbackMs: 600_000 })]);
    const h = workflows;
    // Claimed now, their leases run out (for real) while the activity property runs. Each has a
    // queue of its own: a claim must find only that run's task.
    const ageRun = async () => {
      const queue = await createQueue(h, TaskQueueType.WORKFLOW, "aged");
      const { runId } = await h.client.startWorkflow({ workflowName: "fencing", instanceId: uniqueId("aged"), taskQueue: queue });
      const tasks = await pollForTask(() => h.worker.pollWorkflowTasks({ taskQueue: queue, workerId: "pool", maxTasks: 1, maxWait: ms(2_000) }));
      expect(tasks.map((t) => t.runId)).toEqual([runId]);
      const [row] = await h.sql<{ lease_end_us: string }[]>`
        select (extract(epoch from leased_until) * 1000000)::bigint::text as lease_end_us
        from dex.workflow_tasks where run_id = ${runId}`;
      agedRuns.push({ runId, queue, token: tasks[0]!.taskToken, workerId: "pool", leaseEndUs: Number(row!.lease_end_us) });
    };
    for (let i = 0; i < AGED_RUNS; i += 4) await Promise.all(Array.from({ length: Math.min(4, AGED_RUNS - i) }, ageRun));
  });
  afterAll(async () => {
    if (process.env.DEX_FC_COVERAGE) {
      console.log([...timings].map(([k, v]) => `${k}: n=${v.length} total=${v.reduce((a, b) => a + b, 0)}ms`).join("\n"));
      console.log([...coverage].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}: ${n}`).join("\n"));
    }
    await Promise.all([activities?.close(), workflows?.close()]);
  });

  it("activity tasks: the first valid result wins, stale and forged tokens change nothing", { timeout: 180_000 }, async ({ signal }) => {
    const h = activities;
    const workflowQueue = await createQueue(h, TaskQueueType.WORKFLOW, "fencing-a");
    const activityQueue = await createQueue(h, TaskQueueType.ACTIVITY, "fencing-a");
    await fc.assert(
      fc.asyncProperty(activityScenario, (scenario) => {
        // Timed out: no further scenario writes (shrinking then ends at once).
        signal.throwIfAborted();
        return new ActivityScenarioRun(h, scenario, workflowQueue, activityQueue).run();
      }),
      fcParameters(ACTIVITY_RUNS),
    );
  });

  it("workflow tasks: the first valid completion wins, stale and forged tokens change nothing", { timeout: 180_000 }, async ({ signal }) => {
    const h = workflows;
    const lastLeaseEnd = Math.max(...agedRuns.map((r) => r.leaseEndUs));
    await waitFor(
      async () => {
        const [row] = await h.sql<{ now_us: string }[]>`select (extract(epoch from now()) * 1000000)::bigint::text as now_us`;
        return Number(row!.now_us) > lastLeaseEnd;
      },
      { intervalMs: 100, message: "the leases of the aged workflow tasks to run out" },
    );
    const queue = await createQueue(h, TaskQueueType.WORKFLOW, "fencing-w");
    await fc.assert(
      fc.asyncProperty(workflowScenario, async (scenario) => {
        signal.throwIfAborted();
        let aged: AgedRun | undefined;
        if (scenario.aged) {
          aged = agedRuns.pop();
          // The prepared runs are used up (more aged scenarios than expected, or shrinking): draw another.
          fc.pre(aged !== undefined);
        }
        await new WorkflowScenarioRun(h, scenario, aged, queue).run();
      }),
      fcParameters(WORKFLOW_RUNS),
    );
  });
});

// -------------------------------------------------------------------------------------------------
// Activity scenarios
// -------------------------------------------------------------------------------------------------

/** What an activity action could have written, read in one statement; times in µs, database clock. */
interface ActivitySnapshot {
  nowUs: number;
  /** The activity task row as jsonb (every column), or null once the task is gone. */
  task: Record<string, unknown> | null;
  leaseId: string | null;
  leasedUntilUs: number | null;
  inbox: Array<{ id: number; kind: string; event: string; dedup_key: string | null }>;
  /** The run's history rows (sequence, kind, bytes). */
  history: unknown;
}

/**
 * What both properties' runs share: the actions played one by one, each timed,
 * a failure named by its step; once the run's outcome is in, at most
 * AFTER_THE_END more (they show that nothing gets through; more add nothing).
 */
abstract class ScenarioRun<A extends { op: string }> {
  protected step = 0;
  /** True once the activity has its outcome, or the run ended. */
  protected abstract ended(): boolean;
  protected abstract act(action: A): Promise<void>;
  protected abstract finish(): Promise<void>;
  protected abstract annotate(err: unknown, where: string): Error;

  protected async play(actions: A[]): Promise<void> {
    let afterEnd = 0;
    for (const action of actions) {
      if (this.ended() && ++afterEnd > AFTER_THE_END) break;
      this.step++;
      const t0 = Date.now();
      try {
        await this.act(action);
        timing(`${this.constructor.name} ${action.op}`, Date.now() - t0);
      } catch (err) {
        throw this.annotate(err, `step ${this.step} ${JSON.stringify(action, bytesAsLength)}`);
      }
    }
    await this.finish().catch((err: unknown) => {
      throw this.annotate(err, "final history check");
    });
  }
}

class ActivityScenarioRun extends ScenarioRun<ActivityAction> {
  private readonly model: ActivityModel;
  private readonly tokens: Uint8Array[] = [];
  private runId = "";
  private baseline: unknown;

  constructor(
    private readonly h: Harness,
    private readonly scenario: ActivityScenario,
    /** Queues only this property uses; each scenario ends its run, which removes its tasks. */
    private readonly workflowQueue: string,
    private readonly activityQueue: string,
  ) {
    super();
    this.model = new ActivityModel(scenario.maximumAttempts);
  }

  async run(): Promise<void> {
    await this.start();
    try {
      // The first action claims: there is a token to play with.
      await this.play([{ op: "claim" }, ...this.scenario.actions]);
    } finally {
      await this.h.client.terminateRun({ run: byRunId(this.runId), reason: "scenario over" }).catch(() => undefined);
    }
  }

  protected ended(): boolean {
    return this.model.phase === "done";
  }

  protected annotate(err: unknown, where: string): Error {
    const m = this.model;
    const state = `model: ${m.phase}, attempt ${m.attempt}, current token ${m.current ?? "-"} of ${this.tokens.length}, outcome ${JSON.stringify(m.outcome)}`;
    const message = err instanceof Error ? err.message : String(err);
    return new Error(`run ${this.runId}, ${where} (${state}): ${message}`, { cause: err });
  }

  private async start(): Promise<void> {
    const { h } = this;
    const { runId } = await h.client.startWorkflow({ workflowName: "fencing", instanceId: uniqueId("fence"), taskQueue: this.workflowQueue });
    this.runId = runId;
    const tasks = await pollForTask(() =>
      h.worker.pollWorkflowTasks({ taskQueue: this.workflowQueue, workerId: "wf", maxTasks: 1, maxWait: ms(2_000) }),
    );
    expect(tasks.map((t) => t.runId)).toEqual([runId]);
    await h.worker.completeWorkflowTask({
      taskToken: tasks[0]!.taskToken,
      commands: [
        scheduleActivity(1, "act", {
          taskQueue: this.activityQueue,
          heartbeatTimeout: ms(HEARTBEAT_MS),
          startToCloseTimeout: ms(START_TO_CLOSE_MS),
          retryPolicy: {
            initialInterval: ms(RETRY_INTERVAL_MS),
            backoffCoefficient: 1,
            maximumAttempts: this.scenario.maximumAttempts,
            nonRetryableErrorTypes: [FATAL_TYPE],
          },
        }),
      ],
    });
    const { events } = await h.client.getRunHistory({ run: byRunId(runId) });
    expect(events.map((e) => e.attributes.case)).toEqual(["runStarted", "workflowTaskCompleted", "activityScheduled"]);
    this.baseline = (await this.snap(false)).history;
  }

  private async snap(checkHistory = true): Promise<ActivitySnapshot> {
    const [row] = await this.h.sql<
      {
        now_us: string;
        task: Record<string, unknown> | null;
        leased_until_us: string | null;
        inbox: ActivitySnapshot["inbox"];
        history: unknown;
      }[]
    >`
      select (extract(epoch from now()) * 1000000)::bigint::text as now_us,
             (select to_jsonb(t) from dex.activity_tasks t where t.run_id = ${this.runId} and t.seq = 1) as task,
             (select (extract(epoch from t.leased_until) * 1000000)::bigint::text
              from dex.activity_tasks t where t.run_id = ${this.runId} and t.seq = 1) as leased_until_us,
             coalesce((select jsonb_agg(jsonb_build_object('id', i.id, 'kind', i.kind, 'event', encode(i.event, 'hex'),
                                                           'dedup_key', i.dedup_key) order by i.id)
                       from dex.inbox i where i.run_id = ${this.runId}), '[]'::jsonb) as inbox,
             (select jsonb_agg(jsonb_build_object('sequence', e.sequence, 'kind', e.kind, 'event', encode(e.event, 'hex'))
                               order by e.sequence)
              from dex.history_events e where e.run_id = ${this.runId}) as history`;
    // Nothing an activity does reaches history before the run's next workflow task completes.
    if (checkHistory) expect(row!.history, "the run's history changed while its activity ran").toEqual(this.baseline);
    return {
      nowUs: Number(row!.now_us),
      task: row!.task,
      leaseId: (row!.task?.lease_id as string | null | undefined) ?? null,
      leasedUntilUs: row!.leased_until_us === null ? null : Number(row!.leased_until_us),
      inbox: row!.inbox,
      history: row!.history,
    };
  }

  private token(ref: Parameters<typeof pickToken>[1]) {
    return pickToken(this.tokens, ref)!;
  }

  private currentLeaseId(): string {
    return leaseIdOf(this.tokens[this.model.current!]!);
  }

  /**
   * The reaper runs on its own: if the row no longer carries the model's current lease, it timed
   * the attempt out. Checks that it was allowed to (the lease had ended) and did it right, and
   * applies it to the model. Returns whether it happened.
   */
  private reaped(s: ActivitySnapshot): boolean {
    if (this.model.phase !== "leased" || s.leaseId === this.currentLeaseId()) return false;
    expect(this.model.leaseEndUs, "the attempt was timed out before its lease ended").toBeLessThanOrEqual(s.nowUs);
    const attempt = this.model.attempt;
    cover(`activity reaper: ${this.model.retries("timeout") ? "retry" : "final"}`);
    if (this.model.timedOut()) {
      expect(s.task, "a timed-out attempt with attempts left keeps its task").not.toBeNull();
      expect(s.task!.lease_id).toBeNull();
      expect(s.task!.attempt).toBe(attempt);
      this.expectTimeoutFailure(s.task!.last_failure);
      expect(s.inbox, "a retried attempt leaves no outcome").toEqual([]);
    } else {
      expect(s.task, "the last attempt timed out: the task is gone").toBeNull();
      this.expectOutcomeInInbox(s);
    }
    return true;
  }

  private expectTimeoutFailure(lastFailure: unknown): void {
    const failure = fromBinary(FailureSchema, Buffer.from(byteaHex(lastFailure) ?? "", "hex"));
    expect(failure.kind).toBe(FailureKind.TIMEOUT);
    expect(failure.timeoutType).toBe(TimeoutType.HEARTBEAT);
  }

  /** A rejected call changed nothing (bar what the reaper did meanwhile, checked in reaped()). */
  private unchanged(before: ActivitySnapshot, after: ActivitySnapshot): void {
    if (this.reaped(after)) {
      // The reaper writes only the lease, the failure and the visibility: the details stay.
      if (after.task) expect(after.task.heartbeat_details).toEqual(before.task?.heartbeat_details);
      return;
    }
    expect({ task: after.task, inbox: after.inbox }, "a rejected call changed the task or the inbox").toEqual({
      task: before.task,
      inbox: before.inbox,
    });
  }

  /** The model's outcome is the one row in the inbox, and the task is gone. */
  private expectOutcomeInInbox(s: ActivitySnapshot): void {
    expect(s.task, "the activity has its outcome: its task is gone").toBeNull();
    expect(s.inbox.map((r) => [r.kind, r.dedup_key])).toEqual([
      [this.model.outcome!.kind === "completed" ? "activity_completed" : "activity_failed", "activity-result:1"],
    ]);
    expectOutcome(decodeInboxEvent(s.inbox[0]!.event), this.model.outcome!);
  }

  /** A call with the current token answered NOT_FOUND: only right if the reaper got there first. */
  private lostToReaper(code: string, before: ActivitySnapshot, after: ActivitySnapshot, what: string): void {
    expect(code, `${what} with the current token`).toBe("NOT_FOUND");
    expect(this.model.leaseEndUs, `${what} with the current token was refused while its lease was live`).toBeLessThanOrEqual(after.nowUs);
    expect(this.reaped(after), `${what} with the current token was refused, and the reaper had not timed the attempt out`).toBe(true);
    if (after.task) expect(after.task.heartbeat_details).toEqual(before.task?.heartbeat_details);
  }

  protected async act(action: ActivityAction): Promise<void> {
    const { h, model } = this;
    const before = await this.snap();
    this.reaped(before);
    switch (action.op) {
      case "claim": {
        const waiting = model.phase === "waiting";
        const poll = (waitMs: number) =>
          h.worker.pollActivityTasks({ taskQueue: this.activityQueue, workerId: "a", maxTasks: 1, maxWait: ms(waitMs) });
        // Not waiting: nothing may come, and a short poll shows it (the lease is not re-claimable).
        const tasks = waiting ? await pollForTask(() => poll(2_000)) : (await poll(50)).tasks;
        const after = await this.snap();
        if (waiting) {
          expect(tasks, "a waiting attempt is handed out").toHaveLength(1);
        } else if (tasks.length === 0) {
          cover(`activity claim: nothing (${model.phase})`);
          this.unchanged(before, after);
          return;
        } else {
          cover("activity claim: retried by the reaper during the poll");
          // Handed out while leased: only if the lease ran out and the reaper retried it meanwhile.
          expect(model.phase, "a task was handed out while it had its outcome").toBe("leased");
          expect(model.leaseEndUs, "a task was handed out while its lease was live").toBeLessThanOrEqual(after.nowUs);
          expect(model.timedOut(), "a task was handed out again after its last attempt").toBe(true);
          this.expectTimeoutFailure(after.task?.last_failure);
        }
        const task = tasks[0]!;
        cover(`activity claim: attempt ${Math.min(task.attempt, 4)}${task.attempt >= 4 ? "+" : ""}`);
        expect([task.runId, task.seq, task.activityName]).toEqual([this.runId, 1, "act"]);
        expect(task.attempt, "the attempt number").toBe(model.attempt + 1);
        expect(fromJson(task.heartbeatDetails), "the next attempt receives the last accepted heartbeat's details").toEqual(model.details);
        const deadline = micros(task.leaseDeadline!);
        expect(deadline).toBeGreaterThanOrEqual(Math.floor((before.nowUs + HEARTBEAT_MS * 1000) / 1000) * 1000);
        expect(deadline).toBeLessThanOrEqual(after.nowUs + HEARTBEAT_MS * 1000);
        this.tokens.push(task.taskToken);
        model.claimed(this.tokens.length - 1, deadline);
        if (!this.reaped(after)) {
          expect(after.task!.attempt).toBe(model.attempt);
          model.leaseEndUs = after.leasedUntilUs!;
          expect(Math.floor(model.leaseEndUs / 1000) * 1000).toBe(deadline);
        }
        return;
      }

      case "complete": {
        const { token, index } = this.token(action.token);
        const result = `result of step ${this.step}`;
        const a =
          this.step % 2
            ? (await reportItems(h, [{ case: "complete", value: { taskToken: token, result: json(result) } }]))[0]!
            : await answer(h.worker.completeActivityTask({ taskToken: token, result: json(result) }));
        const after = await this.snap();
        if (!model.isCurrent(index)) {
          cover(`activity complete: stale token (${model.phase})`);
          expect(a.code, "complete with a token that is not the current attempt's").toBe("NOT_FOUND");
          this.unchanged(before, after);
        } else if (a.code === "OK") {
          cover(`activity complete: accepted${model.leaseEndUs <= before.nowUs ? " after the lease ran out" : ""}`);
          model.completed(result);
          this.expectOutcomeInInbox(after);
        } else {
          cover("activity complete: lost to the reaper");
          this.lostToReaper(a.code, before, after, "complete");
        }
        return;
      }

      case "fail": {
        const { token, index } = this.token(action.token);
        const message = `failure of step ${this.step}`;
        const a =
          this.step % 2
            ? (await reportItems(h, [{ case: "fail", value: { taskToken: token, failure: failureOf(action.failure, message) } }]))[0]!
            : await answer(h.worker.failActivityTask({ taskToken: token, failure: failureOf(action.failure, message) }));
        const after = await this.snap();
        if (!model.isCurrent(index)) {
          cover(`activity fail: stale token (${model.phase})`);
          expect(a.code, "fail with a token that is not the current attempt's").toBe("NOT_FOUND");
          this.unchanged(before, after);
        } else if (a.code === "OK") {
          cover(`activity fail: accepted, ${model.retries(action.failure) ? "retry" : "final"}${model.leaseEndUs <= before.nowUs ? ", after the lease ran out" : ""}`);
          const attempt = model.attempt;
          const retry = model.failed(action.failure, message);
          expect(ok(a, "fail").willRetry, "willRetry").toBe(retry);
          if (retry) this.expectRetryScheduled(before, after, attempt, message);
          else this.expectOutcomeInInbox(after);
        } else {
          cover("activity fail: lost to the reaper");
          this.lostToReaper(a.code, before, after, "fail");
        }
        return;
      }

      case "heartbeat": {
        const { token, index } = this.token(action.token);
        const details = `details of step ${this.step}`;
        const a = await answer(h.worker.heartbeatActivityTask({ taskToken: token, details: json(details) }));
        const after = await this.snap();
        if (!model.isCurrent(index)) {
          cover(`activity heartbeat: stale token (${model.phase})`);
          expect(a.code, "heartbeat with a token that is not the current attempt's").toBe("NOT_FOUND");
          this.unchanged(before, after);
          return;
        }
        if (model.leaseEndUs > after.nowUs) expect(a.code, "heartbeat with the current token, lease live").toBe("OK");
        if (model.leaseEndUs <= before.nowUs) expect(a.code, "heartbeat with the current token after its lease ran out").toBe("NOT_FOUND");
        if (a.code !== "OK") {
          cover("activity heartbeat: current token, lease ran out");
          expect(a.code).toBe("NOT_FOUND");
          this.unchanged(before, after);
          return;
        }
        cover("activity heartbeat: accepted");
        const beat = ok(a, "heartbeat");
        expect(beat.cancelRequested).toBe(false);
        const deadline = micros(beat.leaseDeadline!);
        expect(deadline).toBeGreaterThanOrEqual(Math.floor((before.nowUs + HEARTBEAT_MS * 1000) / 1000) * 1000);
        expect(deadline).toBeLessThanOrEqual(after.nowUs + HEARTBEAT_MS * 1000);
        model.heartbeated(deadline, details);
        if (!this.reaped(after)) {
          model.leaseEndUs = after.leasedUntilUs!;
          expect(Math.floor(model.leaseEndUs / 1000) * 1000).toBe(deadline);
          expect(after.task!.attempt).toBe(model.attempt);
          expect(fromJson(decodePayloadHex(after.task!.heartbeat_details))).toBe(details);
        }
        return;
      }

      case "race": {
        const { token, index } = this.token(action.token);
        const results = Array.from({ length: action.completes }, (_, i) => `result ${i} of step ${this.step}`);
        const message = `racing failure of step ${this.step}`;
        // Odd steps: all racers as items of one ReportActivityTasks call (one token, several items).
        const answers = this.step % 2
          ? await reportItems(h, [
              ...results.map((r): ReportOutcome => ({ case: "complete", value: { taskToken: token, result: json(r) } })),
              { case: "fail", value: { taskToken: token, failure: failureOf("retryable", message) } },
            ])
          : await Promise.all([
              ...results.map((r) => answer(h.worker.completeActivityTask({ taskToken: token, result: json(r) }))),
              answer(h.worker.failActivityTask({ taskToken: token, failure: failureOf("retryable", message) })),
            ]);
        const after = await this.snap();
        const codes = answers.map((a) => a.code);
        const winners = codes.flatMap((c, i) => (c === "OK" ? [i] : []));
        expect(codes.filter((c) => c !== "OK" && c !== "NOT_FOUND"), "racing calls answer OK or NOT_FOUND").toEqual([]);
        if (!model.isCurrent(index)) {
          cover("activity race: stale token");
          expect(winners, "racing calls with a token that is not the current attempt's").toEqual([]);
          this.unchanged(before, after);
          return;
        }
        if (model.leaseEndUs > after.nowUs) expect(winners, "racing calls with the current token: exactly one wins").toHaveLength(1);
        expect(winners.length, "racing calls with the current token: at most one wins").toBeLessThanOrEqual(1);
        if (winners.length === 0) {
          this.lostToReaper("NOT_FOUND", before, after, "racing calls");
          return;
        }
        const winner = winners[0]!;
        cover(`activity race: won by ${winner < results.length ? "a completion" : "the failure"}`);
        if (winner < results.length) {
          model.completed(results[winner]!);
          this.expectOutcomeInInbox(after);
        } else {
          const attempt = model.attempt;
          const retry = model.failed("retryable", message);
          expect(ok(answers[winner]! as Answer<{ willRetry: boolean }>, "racing fail").willRetry).toBe(retry);
          if (retry) this.expectRetryScheduled(before, after, attempt, message);
          else this.expectOutcomeInInbox(after);
        }
        return;
      }

      case "expire": {
        if (model.phase !== "leased") return;
        const leaseId = this.currentLeaseId();
        const after = await waitFor(
          async () => {
            const s = await this.snap();
            return s.leaseId !== leaseId ? s : undefined;
          },
          { intervalMs: 25, message: "the reaper to time out the expired attempt" },
        );
        expect(this.reaped(after)).toBe(true);
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
        this.reaped(after);
        if (action.then === "nothing") return;
        // In the window after the lease ended: the reaper may or may not have come.
        cover(`activity leaseEnds then ${action.then}${model.phase === "leased" ? "" : " (already reaped)"}`);
        this.step++;
        const then: ActivityAction =
          action.then === "fail" ? { op: "fail", token: "newest", failure: "retryable" } : { op: action.then, token: "newest" };
        return this.act(then);
      }

      case "forged": {
        const { token } = this.token(action.token);
        const forged = garbleToken(token, "activity", action.garble, action.noise);
        const viaBatch = this.step % 2 === 1 && action.call !== "heartbeat";
        const a = viaBatch
          ? (await reportItems(h, [
              action.call === "complete"
                ? { case: "complete", value: { taskToken: forged, result: json("forged") } }
                : { case: "fail", value: { taskToken: forged, failure: failureOf("nonRetryable", "forged") } },
            ]))[0]!
          : await answer<unknown>(
          action.call === "complete"
            ? h.worker.completeActivityTask({ taskToken: forged, result: json("forged") })
            : action.call === "fail"
              ? h.worker.failActivityTask({ taskToken: forged, failure: failureOf("nonRetryable", "forged") })
              : h.worker.heartbeatActivityTask({ taskToken: forged, details: json("forged") }),
        );
        const after = await this.snap();
        expect(a.code, `${action.call} with a token garbled by ${action.garble}`).toBe(expectedForGarble(action.garble));
        cover(`activity forged: ${expectedForGarble(action.garble)}`);
        this.unchanged(before, after);
        return;
      }
    }
  }

  private expectRetryScheduled(before: ActivitySnapshot, after: ActivitySnapshot, attempt: number, message: string): void {
    expect(after.task, "a retried activity keeps its task").not.toBeNull();
    expect(after.task!.lease_id, "a failed attempt's lease is dropped").toBeNull();
    expect(after.task!.attempt).toBe(attempt);
    expect(after.task!.heartbeat_details).toEqual(before.task?.heartbeat_details);
    const failure = fromBinary(FailureSchema, Buffer.from(byteaHex(after.task!.last_failure) ?? "", "hex"));
    expect(failure.message).toBe(message);
    expect(after.inbox, "a retried attempt leaves no outcome").toEqual([]);
  }

  protected async finish(): Promise<void> {
    const { h, model } = this;
    const s = await this.snap();
    this.reaped(s);
    cover(`activity outcome: ${model.outcome ? (model.outcome.kind === "failed" && model.outcome.timeout ? "timed out" : model.outcome.kind) : "none"}`);
    if (model.phase !== "done") {
      // No outcome yet (the reaper may still time the lease out, which the terminate then drops).
      expect(s.inbox, "no outcome while the activity has none").toEqual([]);
      await h.client.terminateRun({ run: byRunId(this.runId), reason: "scenario over" });
      const { events } = await h.client.getRunHistory({ run: byRunId(this.runId) });
      expect(events.map((e) => e.attributes.case)).toEqual(["runStarted", "workflowTaskCompleted", "activityScheduled", "runTerminated"]);
      expectContiguous(events);
      return;
    }
    // The outcome reaches history with the run's next workflow task.
    const tasks = await pollForTask(() =>
      h.worker.pollWorkflowTasks({ taskQueue: this.workflowQueue, workerId: "wf", maxTasks: 1, maxWait: ms(2_000) }),
    );
    expect(tasks.map((t) => t.runId), "the outcome gives the run a workflow task").toEqual([this.runId]);
    const task = tasks[0]!;
    expect(task.historyLength).toBe(3n);
    expect(task.newEvents.map((e) => [e.sequence, e.attributes.case])).toEqual([
      [4n, model.outcome!.kind === "completed" ? "activityCompleted" : "activityFailed"],
    ]);
    expectOutcome(task.newEvents[0]!, model.outcome!);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("done")] });
    const { events } = await h.client.getRunHistory({ run: byRunId(this.runId) });
    expect(events.map((e) => e.attributes.case)).toEqual([
      "runStarted",
      "workflowTaskCompleted",
      "activityScheduled",
      model.outcome!.kind === "completed" ? "activityCompleted" : "activityFailed",
      "workflowTaskCompleted",
      "runCompleted",
    ]);
    expectContiguous(events);
    expectOutcome(events[3]!, model.outcome!);
  }
}

function failureOf(choice: FailureChoice, message: string) {
  return {
    message,
    type: choice === "nonRetryableType" ? FATAL_TYPE : "FlakyError",
    nonRetryable: choice === "nonRetryable",
  };
}

/** heartbeat_details holds a serialized dex.v1.Payload. */
function decodePayloadHex(value: unknown): Payload | undefined {
  const hex = byteaHex(value);
  return hex === undefined ? undefined : fromBinary(PayloadSchema, Buffer.from(hex, "hex"));
}

/** An activity outcome event (inbox or history) is the model's outcome. */
function expectOutcome(event: HistoryEvent, outcome: ActivityOutcome): void {
  const a = event.attributes;
  if (outcome.kind === "completed") {
    expect(a.case).toBe("activityCompleted");
    if (a.case !== "activityCompleted") return;
    expect([a.value.seq, a.value.attempt], "the outcome's seq and attempt").toEqual([1, outcome.attempt]);
    expect(fromJson(a.value.result), "the first valid result").toBe(outcome.result);
  } else {
    expect(a.case).toBe("activityFailed");
    if (a.case !== "activityFailed") return;
    expect([a.value.seq, a.value.attempt], "the outcome's seq and attempt").toEqual([1, outcome.attempt]);
    if (outcome.timeout) {
      expect([a.value.failure?.kind, a.value.failure?.timeoutType]).toEqual([FailureKind.TIMEOUT, TimeoutType.HEARTBEAT]);
    } else {
      expect(a.value.failure?.message, "the first valid failure").toBe(outcome.message);
    }
  }
}

function bytesAsLength(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? `<${value.length} bytes>` : value;
}

// -------------------------------------------------------------------------------------------------
// Workflow scenarios
// -------------------------------------------------------------------------------------------------

interface WorkflowSnapshot {
  nowUs: number;
  task: Record<string, unknown> | null;
  leaseId: string | null;
  inbox: Array<{ id: number; kind: string; event: string; dedup_key: string | null }>;
  run: Record<string, unknown>;
  history: HistoryEvent[];
}

class WorkflowScenarioRun extends ScenarioRun<WorkflowAction> {
  private readonly model = new WorkflowModel();
  private readonly tokens: Uint8Array[] = [];
  private runId = "";

  constructor(
    private readonly h: Harness,
    private readonly scenario: WorkflowScenario,
    private readonly aged: AgedRun | undefined,
    /** Fresh runs share this queue (each scenario ends its run, which removes its task); aged runs have their own. */
    private queue: string,
  ) {
    super();
  }

  async run(): Promise<void> {
    await this.start();
    try {
      await this.play(this.scenario.actions);
    } finally {
      if (this.model.open) await this.h.client.terminateRun({ run: byRunId(this.runId), reason: "scenario over" }).catch(() => undefined);
    }
  }

  protected ended(): boolean {
    return !this.model.open;
  }

  protected annotate(err: unknown, where: string): Error {
    const m = this.model;
    const state = `model: ${m.open ? "open" : "closed"}, task ${JSON.stringify(m.task)}, inbox ${JSON.stringify(m.inbox)}, ${this.tokens.length} tokens, history ${m.history.map((e) => e.case).join(",")}`;
    const message = err instanceof Error ? err.message : String(err);
    return new Error(`run ${this.runId}${this.aged ? " (aged)" : ""}, ${where} (${state}): ${message}`, { cause: err });
  }

  private async start(): Promise<void> {
    const { h } = this;
    if (this.aged) {
      this.runId = this.aged.runId;
      this.queue = this.aged.queue;
      this.tokens.push(this.aged.token);
      this.model.task = { leased: true, attempt: 1, current: 0, workerId: this.aged.workerId, handedOut: [], expired: true };
      const s = await this.snap();
      expect(s.leaseId, "the aged task was not claimed again").toBe(leaseIdOf(this.aged.token));
      expect(this.aged.leaseEndUs, "the aged task's lease has run out").toBeLessThan(s.nowUs);
      return;
    }
    const { runId } = await h.client.startWorkflow({ workflowName: "fencing", instanceId: uniqueId("wfence"), taskQueue: this.queue });
    this.runId = runId;
  }

  private async snap(): Promise<WorkflowSnapshot> {
    const [row] = await this.h.sql<
      { now_us: string; task: Record<string, unknown> | null; inbox: WorkflowSnapshot["inbox"]; run: Record<string, unknown> }[]
    >`
      select (extract(epoch from now()) * 1000000)::bigint::text as now_us,
             (select to_jsonb(t) from dex.workflow_tasks t where t.run_id = ${this.runId}) as task,
             coalesce((select jsonb_agg(jsonb_build_object('id', i.id, 'kind', i.kind, 'event', encode(i.event, 'hex'),
                                                           'dedup_key', i.dedup_key) order by i.id)
                       from dex.inbox i where i.run_id = ${this.runId}), '[]'::jsonb) as inbox,
             (select to_jsonb(r) from dex.runs r where r.id = ${this.runId}) as run`;
    const { events } = await this.h.client.getRunHistory({ run: byRunId(this.runId) });
    return {
      nowUs: Number(row!.now_us),
      task: row!.task,
      leaseId: (row!.task?.lease_id as string | null | undefined) ?? null,
      inbox: row!.inbox,
      run: row!.run,
      history: events,
    };
  }

  /** Nothing but time moves a workflow task on its own: a rejected call must leave all of it. */
  private unchanged(before: WorkflowSnapshot, after: WorkflowSnapshot): void {
    const { nowUs: _b, ...b } = before;
    const { nowUs: _a, ...a } = after;
    expect(a, "a rejected call changed the run, its task, inbox or history").toEqual(b);
  }

  /** History is exactly the model's (plus `extra` at the end), numbered from 1 without gaps. */
  private expectHistory(events: HistoryEvent[], extra: string[] = []): void {
    expectContiguous(events);
    expect(events.map((e) => e.attributes.case)).toEqual([...this.model.history.map((e) => e.case), ...extra]);
    this.model.history.forEach((expected, i) => {
      const a = events[i]!.attributes;
      if (expected.case === "externalEventReceived" && a.case === "externalEventReceived") {
        expect(a.value.eventId).toBe(expected.eventId);
      }
      if (expected.case === "workflowTaskCompleted" && a.case === "workflowTaskCompleted") {
        expect([a.value.attempt, a.value.workerId], `the marker at ${i + 1}: attempt and worker`).toEqual([expected.attempt, expected.workerId]);
      }
    });
  }

  /** The task row is what the model says (present, leased by the current token, or absent). */
  private expectTask(s: WorkflowSnapshot): void {
    const task = this.model.task;
    if (!task) {
      expect(s.task, "the run has no workflow task").toBeNull();
      return;
    }
    expect(s.task, "the run has a workflow task").not.toBeNull();
    expect(s.task!.attempt, "the task's counted attempts").toBe(task.attempt);
    if (task.leased) expect(s.leaseId).toBe(leaseIdOf(this.tokens[task.current!]!));
    else expect(s.leaseId, "the task is not leased").toBeNull();
  }

  private token(ref: Parameters<typeof pickToken>[1]) {
    return pickToken(this.tokens, ref);
  }

  protected async act(action: WorkflowAction): Promise<void> {
    const { h, model } = this;
    const before = await this.snap();
    switch (action.op) {
      case "claim": {
        const workerId = `w${this.step % 2}`;
        const claimable = model.claimable(workerId);
        const poll = (waitMs: number) =>
          h.worker.pollWorkflowTasks({ taskQueue: this.queue, workerId, maxTasks: 1, maxWait: ms(waitMs) });
        const tasks = claimable ? await pollForTask(() => poll(2_000)) : (await poll(50)).tasks;
        const after = await this.snap();
        if (!claimable) {
          cover(model.claimable(workerId === "w0" ? "w1" : "w0") ? "workflow claim: nothing, kept for the sticky worker" : "workflow claim: nothing");
          expect(tasks, "nothing to hand out").toEqual([]);
          this.unchanged(before, after);
          return;
        }
        expect(tasks.map((t) => t.runId), "the task is handed out").toEqual([this.runId]);
        const task = tasks[0]!;
        cover(`workflow claim: ${model.task!.expired ? "an expired lease" : `attempt ${task.attempt}`}`);
        expect(task.attempt, "the attempt number").toBe(model.task!.attempt + 1);
        expect(task.historyLength).toBe(BigInt(model.history.length));
        const inlined = task.attempt === 1 && model.sticky === workerId ? 0 : model.history.length;
        expect(task.history.length, "history is inlined unless this worker caches the run").toBe(inlined);
        expect(
          task.newEvents.map((e) => [e.sequence, e.attributes.case === "externalEventReceived" ? e.attributes.value.eventId : e.attributes.case]),
          "the new events: the inbox, numbered after history",
        ).toEqual(model.inbox.map((id, i) => [BigInt(model.history.length + 1 + i), id]));
        this.tokens.push(task.taskToken);
        model.claimed(this.tokens.length - 1, workerId);
        this.expectTask(after);
        return;
      }

      case "complete": {
        const picked = this.token(action.token);
        if (!picked) return;
        const commands = action.commands === "completeRun" ? [completeRun(`done at step ${this.step}`)] : [];
        const a = await answer(h.worker.completeWorkflowTask({ taskToken: picked.token, commands }));
        const after = await this.snap();
        if (!model.isCurrent(picked.index)) {
          cover(`workflow complete: stale token (${!model.open ? "run ended" : !model.task ? "no task" : model.task.leased ? "leased" : "not leased"})`);
          expect(a.code, "complete with a token that is not the current attempt's").toBe("NOT_FOUND");
          this.unchanged(before, after);
          return;
        }
        const expected = model.completes(action.commands);
        cover(`workflow complete: ${expected} ${action.commands}${model.task!.expired ? ", lease ran out" : ""}`);
        expect(a.code, "complete with the current token").toBe(expected);
        if (expected === "ABORTED") {
          model.aborted();
          expect(after.history).toEqual(before.history);
          expect(after.inbox).toEqual(before.inbox);
          this.expectTask(after);
          return;
        }
        model.completed(action.commands);
        expect(ok(a, "complete").historyLength).toBe(BigInt(model.history.length));
        this.expectHistory(after.history);
        this.expectTask(after);
        expect(after.inbox.length, "the inbox holds the events the task was not given").toBe(model.inbox.length);
        expect(after.run.status).toBe(model.open ? "RUNNING" : "COMPLETED");
        return;
      }

      case "fail": {
        const picked = this.token(action.token);
        if (!picked) return;
        const a = await answer(h.worker.failWorkflowTask({ taskToken: picked.token, failure: { message: `failure of step ${this.step}` } }));
        const after = await this.snap();
        if (!model.isCurrent(picked.index)) {
          cover("workflow fail: stale token");
          expect(a.code, "fail with a token that is not the current attempt's").toBe("NOT_FOUND");
          this.unchanged(before, after);
          return;
        }
        cover(`workflow fail: accepted${model.task!.expired ? ", lease ran out" : ""}`);
        expect(a.code, "fail with the current token").toBe("OK");
        model.failed();
        expect(after.history).toEqual(before.history);
        expect(after.inbox).toEqual(before.inbox);
        this.expectTask(after);
        return;
      }

      case "sendEvent": {
        const eventId = `event-${this.step}`;
        const a = await answer(h.client.sendEvent({ run: byRunId(this.runId), eventId, payload: json(this.step) }));
        const after = await this.snap();
        if (!model.open) {
          expect(a.code, "an event to an ended run").toBe("FAILED_PRECONDITION");
          this.unchanged(before, after);
          return;
        }
        cover(`workflow sendEvent: ${model.task?.leased ? "while leased" : "not leased"}`);
        expect(ok(a, "sendEvent").duplicate).toBe(false);
        model.eventSent(eventId);
        expect(after.history).toEqual(before.history);
        expect(after.inbox.map((r) => r.kind)).toEqual(model.inbox.map(() => "external_event_received"));
        this.expectTask(after);
        return;
      }

      case "race": {
        const picked = this.token(action.token);
        if (!picked) return;
        const answers = await Promise.all([
          answer(h.worker.completeWorkflowTask({ taskToken: picked.token, commands: [] })),
          answer(h.worker.completeWorkflowTask({ taskToken: picked.token, commands: [] })),
          answer(h.worker.failWorkflowTask({ taskToken: picked.token, failure: { message: `racing failure of step ${this.step}` } })),
        ]);
        const after = await this.snap();
        const codes = answers.map((a) => a.code);
        const winners = codes.flatMap((c, i) => (c === "OK" ? [i] : []));
        expect(codes.filter((c) => c !== "OK" && c !== "NOT_FOUND"), "racing calls answer OK or NOT_FOUND").toEqual([]);
        if (!model.isCurrent(picked.index)) {
          cover("workflow race: stale token");
          expect(winners, "racing calls with a token that is not the current attempt's").toEqual([]);
          this.unchanged(before, after);
          return;
        }
        expect(winners, "racing calls with the current token: exactly one wins").toHaveLength(1);
        cover(`workflow race: won by ${winners[0]! < 2 ? "a completion" : "the failure"}`);
        if (winners[0]! < 2) {
          model.completed("none");
          this.expectHistory(after.history);
        } else {
          model.failed();
          expect(after.history).toEqual(before.history);
        }
        this.expectTask(after);
        return;
      }

      case "forged": {
        const picked = this.token(action.token);
        if (!picked) return;
        const forged = garbleToken(picked.token, "workflow", action.garble, action.noise);
        const a = await answer<unknown>(
          action.call === "complete"
            ? h.worker.completeWorkflowTask({ taskToken: forged, commands: [completeRun("forged")] })
            : h.worker.failWorkflowTask({ taskToken: forged, failure: { message: "forged" } }),
        );
        const after = await this.snap();
        expect(a.code, `${action.call} with a token garbled by ${action.garble}`).toBe(expectedForGarble(action.garble));
        cover(`workflow forged: ${expectedForGarble(action.garble)}`);
        this.unchanged(before, after);
        return;
      }
    }
  }

  protected async finish(): Promise<void> {
    const { h, model } = this;
    const s = await this.snap();
    this.expectTask(s);
    if (!model.open) {
      this.expectHistory(s.history);
      expect(s.run.status).toBe("COMPLETED");
      return;
    }
    this.expectHistory(s.history);
    await h.client.terminateRun({ run: byRunId(this.runId), reason: "scenario over" });
    const { events, status } = await h.client.getRunHistory({ run: byRunId(this.runId) });
    expect(status).toBe(RunStatus.TERMINATED);
    this.expectHistory(events, ["runTerminated"]);
    model.open = false;
  }
}

/**
 * The activity-task property runner of the token-fencing tests: one run schedules 1..n activities
 * (some handed out eagerly in the workflow-task completion's answer), then the scenario's actions
 * play on them against the real gRPC API, and every answer and snapshot is checked against a
 * model per activity (activity-fencing-state.ts). Which scenarios run is the test file's choice:
 * it passes the fast-check generator (one activity claimed by a poll in
 * token-fencing.property.test.ts; several, eager slots and a generated first workflow task in
 * token-fencing-eager.property.test.ts). The rules checked are in token-fencing.property.test.ts's header.
 */
import { expect } from "vitest";
import type { HistoryEvent } from "@dex/proto";
import { FATAL_TYPE, type ActivityAction } from "../token-fencing.model.js";
import { byRunId, completeRun, scheduleActivity, type Harness } from "../helpers.js";
import { playFirstTask, type FirstTaskPlan } from "../eager-start-fencing.js";
import { ActivityFencingState } from "./activity-fencing-state.js";
import { actOnActivity } from "./activity-fencing-actions.js";
import { cover, expectContiguous, expectOutcome, ms, pollForTask, ScenarioRun } from "./fencing-calls.js";

export interface ActivityFencingScenario {
  /** Activities the run's first workflow task schedules (seq 1..n). */
  activities: number;
  /** Eager slots the completion offers: the first `slots` activities come back leased to "eager". 0: none offered. */
  slots: number;
  /** RetryPolicy.maximum_attempts of every activity: 0 unlimited. */
  maximumAttempts: number;
  actions: Array<{ activity: number; action: ActivityAction }>;
  /** How the run's first workflow task is handed out (eager start or poll), and what races on it first. */
  firstTask: FirstTaskPlan;
}

export interface ActivityFencingSetup {
  h: Harness;
  /** Queues of this property only; each scenario ends its run, which removes its tasks. */
  workflowQueue: string;
  activityQueue: string;
  /** The activities' lease (heartbeat timeout): short, so that expiries are real and cheap. */
  heartbeatMs: number;
  /** Actions still played once every activity has its outcome. */
  afterTheEnd: number;
}

const START_TO_CLOSE_MS = 120_000;
const RETRY_INTERVAL_MS = 10;

type Step = ActivityFencingScenario["actions"][number];

export class ActivityFencingRun extends ScenarioRun<Step> {
  private readonly st: ActivityFencingState;
  /** The worker that completed the first workflow task: the run is sticky to it (decision 0009). */
  private workflowWorker = "";
  private baselineCases: string[] = [];

  constructor(
    private readonly setup: ActivityFencingSetup,
    private readonly s: ActivityFencingScenario,
  ) {
    super(setup.afterTheEnd);
    this.st = new ActivityFencingState(setup.h, s.activities, s.maximumAttempts, setup.heartbeatMs);
  }

  async run(): Promise<void> {
    try {
      await this.start();
      await this.play(this.s.actions);
    } finally {
      if (this.st.runId) await this.setup.h.client.terminateRun({ run: byRunId(this.st.runId), reason: "scenario over" }).catch(() => undefined);
    }
  }

  protected ended(): boolean {
    return this.st.models.every((m) => m.phase === "done");
  }

  protected kind(step: Step): string {
    return step.action.op;
  }

  protected annotate(err: unknown, where: string): Error {
    const message = err instanceof Error ? err.message : String(err);
    return new Error(`run ${this.st.runId}, ${where} (${this.st.describe()}): ${message}`, { cause: err });
  }

  protected act({ activity, action }: Step): Promise<void> {
    return actOnActivity(
      {
        h: this.setup.h,
        st: this.st,
        activityQueue: this.setup.activityQueue,
        eagerSlots: this.s.slots,
        step: () => this.step,
        nextStep: () => ++this.step,
      },
      activity,
      action,
    );
  }

  /** The run's first workflow task schedules the activities; the first `slots` come back leased. */
  private async start(): Promise<void> {
    const { h, workflowQueue, activityQueue, heartbeatMs } = this.setup;
    const { s, st } = this;
    const first = await playFirstTask(h, s.firstTask, workflowQueue, cover);
    st.runId = first.runId;
    this.workflowWorker = first.workerId;
    const before = await st.snap(false);
    const done = await h.worker.completeWorkflowTask({
      taskToken: first.token,
      commands: st.models.map((_, i) =>
        scheduleActivity(st.seqOf(i), "act", {
          taskQueue: activityQueue,
          heartbeatTimeout: ms(heartbeatMs),
          startToCloseTimeout: ms(START_TO_CLOSE_MS),
          retryPolicy: { initialInterval: ms(RETRY_INTERVAL_MS), backoffCoefficient: 1, maximumAttempts: s.maximumAttempts, nonRetryableErrorTypes: [FATAL_TYPE] },
        }),
      ),
      ...(s.slots > 0 ? { eagerActivitySlots: [{ taskQueue: activityQueue, slots: s.slots, workerId: "eager" }] } : {}),
    });
    const after = await st.snap(false);
    st.baseline = after.history;
    const { events } = await h.client.getRunHistory({ run: byRunId(st.runId) });
    this.baselineCases = events.map((e) => e.attributes.case!);
    expect(this.baselineCases).toEqual(["runStarted", "workflowTaskCompleted", ...st.models.map(() => "activityScheduled")]);
    expect(done.activityTasks.map((t) => [t.seq, t.attempt, t.runId]), "the first `slots` activities come back eagerly").toEqual(
      Array.from({ length: s.slots }, (_, i) => [st.seqOf(i), 1, st.runId]),
    );
    for (const t of done.activityTasks) st.claimed(t.seq - 1, t, before, after, "eager");
    cover(`eager: ${s.slots} of ${s.activities}`);
  }

  /** The outcomes reach history with the run's next workflow task, each exactly once. */
  protected async finish(): Promise<void> {
    const { h } = this.setup;
    const { st } = this;
    const s = await st.snap();
    st.reapedAll(s);
    st.expectInbox(s);
    const done = st.models.flatMap((m, i) => (m.phase === "done" ? [i] : []));
    cover(`outcomes: ${done.length} of ${st.models.length}`);
    if (done.length === 0) {
      // No outcome yet (the reaper may still time a lease out, which the terminate then drops).
      await h.client.terminateRun({ run: byRunId(st.runId), reason: "scenario over" });
      const { events } = await h.client.getRunHistory({ run: byRunId(st.runId) });
      expect(events.map((e) => e.attributes.case)).toEqual([...this.baselineCases, "runTerminated"]);
      expectContiguous(events);
      return;
    }
    const tasks = await pollForTask(() =>
      h.worker.pollWorkflowTasks({ taskQueue: this.setup.workflowQueue, workerId: this.workflowWorker, maxTasks: 1, maxWait: ms(2_000) }),
    );
    expect(tasks.map((t) => t.runId), "the outcomes give the run a workflow task").toEqual([st.runId]);
    const task = tasks[0]!;
    expect(task.historyLength).toBe(BigInt(this.baselineCases.length));
    expect(task.newEvents.map((e) => Number(e.sequence)), "the new events are numbered after history").toEqual(
      task.newEvents.map((_, k) => this.baselineCases.length + 1 + k),
    );
    const seqs = task.newEvents.map((e) => this.outcomeSeq(e));
    expect(new Set(seqs).size, "each outcome once in the task's new events").toBe(seqs.length);
    for (const event of task.newEvents) {
      const seq = this.outcomeSeq(event);
      const m = st.models[seq - 1]!;
      if (m.phase !== "done") {
        // The reaper ended a leased attempt for good after the last snapshot.
        expect(m.phase).toBe("leased");
        expect(m.timedOut(), "an outcome without a final attempt").toBe(false);
      }
      expectOutcome(event, seq, m.outcome!);
    }
    for (const i of done) expect(seqs, `activity ${st.seqOf(i)}'s outcome is handed out`).toContain(st.seqOf(i));
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("done")] });
    const { events } = await h.client.getRunHistory({ run: byRunId(st.runId) });
    expect(events.map((e) => e.attributes.case), "history: the outcomes once each, then the completion").toEqual([
      ...this.baselineCases,
      ...task.newEvents.map((e) => e.attributes.case),
      "workflowTaskCompleted",
      "runCompleted",
    ]);
    expectContiguous(events);
    events.slice(this.baselineCases.length, this.baselineCases.length + seqs.length).forEach((e) => {
      expectOutcome(e, this.outcomeSeq(e), st.models[this.outcomeSeq(e) - 1]!.outcome!);
    });
  }

  private outcomeSeq(event: HistoryEvent): number {
    const a = event.attributes;
    expect(["activityCompleted", "activityFailed"], "an activity outcome").toContain(a.case);
    return (a.value as { seq: number }).seq;
  }
}

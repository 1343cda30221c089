/**
 * The workflow-task property runner of token-fencing.property.test.ts (whose header has the rules):
 * one run per scenario, fresh or "aged" (its first task claimed more than a lease ago), the
 * scenario's claims, completions, failures, events, races and forged tokens played against the
 * real gRPC API and every answer and snapshot checked against the model (WorkflowModel).
 */
import { expect } from "vitest";
import { RunStatus, type HistoryEvent } from "@dex/proto";
import {
  expectedForGarble,
  garbleToken,
  leaseIdOf,
  pickToken,
  WorkflowModel,
  type WorkflowAction,
  type WorkflowScenario,
} from "../token-fencing.model.js";
import { byRunId, completeRun, json, uniqueId, type Harness } from "../helpers.js";
import { answer, cover, expectContiguous, ms, ok, pollForTask, ScenarioRun } from "./fencing-calls.js";

/** A run's first workflow task claimed, kept until its 10 s lease has run out (aged scenarios). */
export interface AgedRun {
  runId: string;
  queue: string;
  token: Uint8Array;
  workerId: string;
  leaseEndUs: number;
}

interface WorkflowSnapshot {
  nowUs: number;
  task: Record<string, unknown> | null;
  leaseId: string | null;
  inbox: Array<{ id: number; kind: string; event: string; dedup_key: string | null }>;
  run: Record<string, unknown>;
  history: HistoryEvent[];
}

export class WorkflowScenarioRun extends ScenarioRun<WorkflowAction> {
  private readonly model = new WorkflowModel();
  private readonly tokens: Uint8Array[] = [];
  private runId = "";

  constructor(
    private readonly h: Harness,
    private readonly scenario: WorkflowScenario,
    private readonly aged: AgedRun | undefined,
    /** Fresh runs share this queue (each scenario ends its run, which removes its task); aged runs have their own. */
    private queue: string,
    afterTheEnd: number,
  ) {
    super(afterTheEnd);
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

  protected kind(action: WorkflowAction): string {
    return action.op;
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

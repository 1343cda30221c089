/** engine/reset-plan.ts, pure: which points are valid, what the new run keeps, what it schedules again. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DexError, HistoryEventSchema, type HistoryEvent } from "@dex/proto";
import { describe, expect, it } from "vitest";
import { planReset, resetPoints } from "../src/engine/reset-plan.js";

type Init = NonNullable<Parameters<typeof create<typeof HistoryEventSchema>>[1]>["attributes"];

function history(...attributes: Init[]): HistoryEvent[] {
  return attributes.map((a, i) => create(HistoryEventSchema, { sequence: BigInt(i + 1), attributes: a }));
}

const FIRE = new Date("2030-01-01T00:00:00Z");
const started: Init = { case: "runStarted", value: { workflowName: "wf", instanceId: "i" } };
const marker: Init = { case: "workflowTaskCompleted", value: { workerId: "w", attempt: 1 } };
const scheduled = (seq: number): Init => ({ case: "activityScheduled", value: { seq, activityName: "act", taskQueue: "default", priority: 50 } });
const completed = (seq: number): Init => ({ case: "activityCompleted", value: { seq } });
const event = (eventId: string): Init => ({ case: "externalEventReceived", value: { eventId } });

function refusal(fn: () => unknown): DexError {
  try {
    fn();
  } catch (err) {
    if (err instanceof DexError) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("reset plan", () => {
  // 1 started, 2 marker, 3 act#1 scheduled | 4 act#1 done, 5 event go, 6 marker, 7 timer#2, 8 act#3 | 9 act#3 done, 10 marker, 11 run_failed
  const h = history(
    started,
    marker,
    scheduled(1),
    completed(1),
    event("go"),
    marker,
    { case: "timerStarted", value: { seq: 2, fireTime: timestampFromDate(FIRE) } },
    scheduled(3),
    completed(3),
    marker,
    { case: "runFailed", value: {} },
  );

  it("lists the start and every marker, each keeping the events before its task's inputs", () => {
    expect(resetPoints(h)).toEqual([
      { sequence: 1, keepThrough: 1 },
      { sequence: 2, keepThrough: 1 },
      { sequence: 6, keepThrough: 3 },
      { sequence: 10, keepThrough: 8 },
    ]);
  });

  it("counts an accepted update among its task's inputs: a point keeps the update's whole block or none of it", () => {
    const withUpdate = history(started, marker, event("go"), { case: "updateAccepted", value: { updateId: "u", name: "add" } }, marker);
    expect(resetPoints(withUpdate)).toEqual([
      { sequence: 1, keepThrough: 1 },
      { sequence: 2, keepThrough: 1 },
      { sequence: 5, keepThrough: 2 },
    ]);
  });

  it("last workflow task: keeps the timer and re-schedules the activity whose result came after the point", () => {
    const plan = planReset(h, { kind: "last_workflow_task" });
    expect(plan.keepThrough).toBe(8);
    expect(plan.activities.map((a) => a.seq)).toEqual([3]);
    expect(plan.timers).toMatchObject([{ seq: 2, kind: "timer", fireAt: FIRE }]);
  });

  it("first workflow task keeps run_started alone, with nothing in flight", () => {
    expect(planReset(h, { kind: "first_workflow_task" })).toEqual({ keepThrough: 1, activities: [], timers: [] });
    expect(planReset(h, { kind: "event", sequence: 1 }).keepThrough).toBe(1);
  });

  it("refuses an event that is not a boundary, naming the nearest valid points", () => {
    const err = refusal(() => planReset(h, { kind: "event", sequence: 7 }));
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.message).toContain("nearest valid points are event:6 or event:10");
    expect(refusal(() => planReset(h, { kind: "event", sequence: 50 })).message).toContain("the history has 11 events");
  });

  it("refuses a marker whose kept history leaves a child run in flight", () => {
    const withChild = history(
      started,
      marker,
      { case: "childRunScheduled", value: { seq: 1, workflowName: "c", instanceId: "c-1" } },
      { case: "childRunStarted", value: { seq: 1, runId: "r" } },
      marker,
      scheduled(2),
      { case: "childRunEnded", value: { seq: 1 } },
      completed(2),
      marker,
      scheduled(3),
      completed(3),
      marker,
    );
    // Markers 5 and 9 keep the child's start but not its end (event 7 is an input of 9's task); 12 keeps both.
    expect(resetPoints(withChild).map((p) => p.sequence)).toEqual([1, 2, 12]);
    expect(refusal(() => planReset(withChild, { kind: "event", sequence: 9 })).message).toContain("event:2 or event:12");
  });

  it("drops an event wait's timeout when its event is re-delivered", () => {
    const waits = history(
      started,
      marker,
      { case: "eventWaitStarted", value: { seq: 1, eventId: "go", timeoutTime: timestampFromDate(FIRE) } },
      { case: "eventWaitStarted", value: { seq: 2, eventId: "other", timeoutTime: timestampFromDate(FIRE) } },
      event("go"),
      marker,
    );
    expect(planReset(waits, { kind: "last_workflow_task" }).timers.map((t) => t.seq)).toEqual([2]);
  });
});

/**
 * ResetRun's plan, pure: from the old run's history and the requested point,
 * how much history the new run keeps and what was in flight at that point.
 *
 * A point is a workflow-task boundary: the moment a workflow task began. The
 * new run keeps every event BEFORE that task's inputs, so its history is
 * whole blocks (inputs, marker, commands: docs/worker-protocol.md) ending with
 * a block's commands, or run_started alone; its next workflow task replays
 * them and re-issues whatever the code does next. That keeps the history in
 * the one shape every worker already handles: no new rule for other SDKs.
 */
import { toBinary } from "@bufbuild/protobuf";
import { durationMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { ActivityScheduledAttributesSchema, DexError, type HistoryEvent } from "@dex/proto";
import type { NewActivityTask } from "../store/completion.js";
import type { NewTimer } from "../store/timers.js";
import { encodeEvent, encodePayload } from "./events.js";
import { DEFAULT_START_TO_CLOSE_MS } from "./model.js";

export type ResetPoint = { kind: "first_workflow_task" } | { kind: "last_workflow_task" } | { kind: "event"; sequence: number };

export interface ResetPlan {
  /** The new run keeps events 1..keepThrough (run_started is rewritten, the rest copied). */
  keepThrough: number;
  /** Activities scheduled in the kept history without an outcome there: scheduled again. */
  activities: NewActivityTask[];
  /** Timers and event-wait timeouts started in the kept history and not resolved there. */
  timers: NewTimer[];
}

/** Input events open a block; everything else but the marker is a command event. */
const INPUT_CASES = new Set<HistoryEvent["attributes"]["case"]>([
  "runStarted",
  "activityCompleted",
  "activityFailed",
  "timerFired",
  "externalEventReceived",
  // An update is an input of the task that hands it out (decision 0024): without it here a point
  // after an update's block kept the update and the inputs before it, without their marker.
  "updateAccepted",
  "eventWaitTimedOut",
  "childRunStarted",
  "childRunStartFailed",
  "childRunEnded",
  "cancelRequested",
]);

/**
 * Every valid point of a history, as the sequence a caller names (1 for the
 * start, else the marker's) with what the new run keeps. A marker whose kept
 * history leaves a child run in flight is not valid: the child reports its end
 * to the old run only, so the new run would wait for it forever.
 */
export function resetPoints(history: readonly HistoryEvent[]): Array<{ sequence: number; keepThrough: number }> {
  const points = [{ sequence: 1, keepThrough: 1 }];
  for (const event of history) {
    if (event.attributes.case !== "workflowTaskCompleted") continue;
    let keep = Number(event.sequence) - 1;
    while (keep > 1 && INPUT_CASES.has(history[keep - 1]!.attributes.case)) keep--;
    if (childInFlight(history.slice(0, keep)) === undefined) points.push({ sequence: Number(event.sequence), keepThrough: keep });
  }
  return points;
}

export function planReset(history: readonly HistoryEvent[], point: ResetPoint): ResetPlan {
  const keepThrough = chooseKeep(history, point);
  const kept = history.slice(0, keepThrough);
  return { keepThrough, ...inFlight(kept, history.slice(keepThrough)) };
}

function chooseKeep(history: readonly HistoryEvent[], point: ResetPoint): number {
  const markers = history.filter((e) => e.attributes.case === "workflowTaskCompleted").map((e) => Number(e.sequence));
  const points = resetPoints(history);
  const keepOf = (sequence: number): number | undefined => points.find((p) => p.sequence === sequence)?.keepThrough;
  if (point.kind === "first_workflow_task") return 1;
  if (point.kind === "last_workflow_task") {
    const last = markers.at(-1);
    if (last === undefined) return 1;
    const keep = keepOf(last);
    if (keep === undefined) throw notAPoint(`the last workflow task (marker at event ${last})`, last, points);
    return keep;
  }
  const keep = keepOf(point.sequence);
  if (keep !== undefined) return keep;
  const what = markers.includes(point.sequence)
    ? `event ${point.sequence}`
    : point.sequence > history.length
      ? `event ${point.sequence} (the history has ${history.length} events)`
      : `event ${point.sequence} (${history[point.sequence - 1]?.attributes.case ?? "?"}) is not a workflow_task_completed marker and`;
  throw notAPoint(what, point.sequence, points);
}

function notAPoint(what: string, near: number, points: ReadonlyArray<{ sequence: number }>): DexError {
  const below = points.filter((p) => p.sequence <= near).at(-1)?.sequence;
  const above = points.find((p) => p.sequence > near)?.sequence;
  const nearest = [below, above].filter((s) => s !== undefined).map((s) => `event:${s}`).join(" or ");
  return new DexError(
    "INVALID_ARGUMENT",
    `to: ${what} is not a point a run can be reset to (a workflow_task_completed marker whose kept history ` +
      `leaves no child run in flight, or event:1 for the start); the nearest valid points are ${nearest}`,
  );
}

/** The seq of a child run started in `kept` whose end is not recorded there. */
function childInFlight(kept: readonly HistoryEvent[]): number | undefined {
  const open = new Set<number>();
  for (const { attributes: a } of kept) {
    if (a.case === "childRunScheduled") open.add(a.value.seq);
    else if (a.case === "childRunEnded" || a.case === "childRunStartFailed") open.delete(a.value.seq);
  }
  return open.values().next().value;
}

/**
 * What the kept history left waiting, to be scheduled again for the new run:
 * its worker replays the kept commands and then waits for their outcomes, so
 * without new tasks and timers it would wait forever. Activities start over
 * (attempt 1, schedule-to-close counted from now); timers keep their fire
 * time (one already past fires at once). An event wait whose event is
 * re-delivered needs no timeout: the event is in the new run's inbox.
 */
function inFlight(kept: readonly HistoryEvent[], dropped: readonly HistoryEvent[]): Omit<ResetPlan, "keepThrough"> {
  const activities = new Map<number, NewActivityTask>();
  const timers = new Map<number, NewTimer>();
  const receivedEvents = new Set<string>();
  for (const { attributes: a } of kept) {
    switch (a.case) {
      case "activityScheduled": {
        const startToCloseMs = a.value.startToCloseTimeout ? durationMs(a.value.startToCloseTimeout) : DEFAULT_START_TO_CLOSE_MS;
        activities.set(a.value.seq, {
          queue: a.value.taskQueue,
          seq: a.value.seq,
          activityName: a.value.activityName,
          priority: a.value.priority,
          input: encodePayload(a.value.input),
          options: toBinary(ActivityScheduledAttributesSchema, a.value),
          scheduleToCloseMs: a.value.scheduleToCloseTimeout ? durationMs(a.value.scheduleToCloseTimeout) : null,
          startToCloseMs,
          leaseMs: a.value.heartbeatTimeout ? durationMs(a.value.heartbeatTimeout) : startToCloseMs,
        });
        break;
      }
      case "activityCompleted":
      case "activityFailed":
        activities.delete(a.value.seq);
        break;
      case "timerStarted":
        if (a.value.fireTime) {
          const event = encodeEvent({ case: "timerFired", value: { seq: a.value.seq } }).event;
          timers.set(a.value.seq, { seq: a.value.seq, kind: "timer", fireAt: timestampDate(a.value.fireTime), eventId: null, event });
        }
        break;
      case "eventWaitStarted":
        if (a.value.timeoutTime) {
          const event = encodeEvent({ case: "eventWaitTimedOut", value: { seq: a.value.seq } }).event;
          timers.set(a.value.seq, {
            seq: a.value.seq,
            kind: "event_wait",
            fireAt: timestampDate(a.value.timeoutTime),
            eventId: a.value.eventId,
            event,
          });
        }
        break;
      case "timerFired":
      case "timerCancelled":
      case "eventWaitTimedOut":
        timers.delete(a.value.seq);
        break;
      case "externalEventReceived":
        receivedEvents.add(a.value.eventId);
        break;
    }
  }
  for (const { attributes: a } of dropped) if (a.case === "externalEventReceived") receivedEvents.add(a.value.eventId);
  const waiting = [...timers.values()].filter((t) => t.kind === "timer" || !receivedEvents.has(t.eventId!));
  return { activities: [...activities.values()], timers: waiting };
}

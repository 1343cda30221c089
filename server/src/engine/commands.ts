/**
 * Workflow commands -> history events and the writes that go with them.
 * Pure: validates everything before the completion writes anything, applies
 * the documented defaults, and returns what the store must write. Checks that
 * need the database (seqs used by earlier tasks, queues that must exist) are
 * done by the completion with what the plan lists (`newSeqs`, `references`).
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { FailureKind, FailureSchema, ParentClosePolicy, type Command, type Payload } from "@dex/proto";
import { uuidv7 } from "uuidv7";
import { planActivity, type PlannedActivity } from "./command-activity.js";
import { planPatchMarker } from "./command-patch.js";
import { encodeEvent, encodeFailure, encodePayload, type CarriedInboxEvent, type EncodedEvent, type EventInit } from "./events.js";
import { planCarriedEvents } from "./carried-events.js";
import { planCompleteUpdate, undeliveredUpdatesField, type UndeliveredUpdates } from "./updates.js";
import { MAX_CUSTOM_STATUS_LENGTH, MAX_LABELS, type Limits } from "./limits.js";
import { DedupKind, dedupKey, MAX_COMMANDS_PER_TASK, MAX_DURATION_MS, RunStatus } from "./model.js";
import { runTimeoutField, workflowTaskTimeoutField } from "./run-timeout-fields.js";
import {
  durationField,
  enumField,
  failureField,
  intInRange,
  invalid,
  labelsField,
  optionalString,
  optionalText,
  payloadField,
  queueName,
  requireString,
  timestampField,
} from "./validation.js";

export type { PlannedActivity } from "./command-activity.js";

export interface PlannedTimer {
  seq: number;
  kind: "timer" | "event_wait";
  fireAt: Date;
  eventId: string | null;
  /** The inbox event it becomes when it fires. */
  event: Uint8Array;
}

export interface PlannedChild {
  seq: number;
  workflowName: string;
  instanceId: string;
  taskQueue: string;
  input: Payload | undefined;
  labels: Record<string, string>;
  priority: number;
  parentClosePolicy: "cancel" | "abandon";
  runTimeoutMs?: number | undefined;
  workflowTaskTimeoutMs?: number | undefined;
}

/** A command that names an earlier one by seq: that seq must belong to a command event of `kind`. */
export interface SeqReference {
  field: string;
  seq: number;
  /** The history event kind that created the seq ("timer_started", ...). */
  kind: string;
  /** Another kind that may have created it (cancel_timer names a timer or an event wait). */
  orKind?: string;
}

export interface CommandPlan {
  /** Command events, one per command, in order. Seq-creating ones carry dedup key 'seq:<n>'. */
  events: EncodedEvent[];
  activities: PlannedActivity[];
  timers: PlannedTimer[];
  cancelTimers: number[];
  cancelActivities: number[];
  children: PlannedChild[];
  cancelChildren: number[];
  /** Seqs created by this task: none may exist in the run's history. */
  newSeqs: number[];
  /** Seqs referred to that were created by earlier tasks: each must exist with the right kind. */
  references: SeqReference[];
  /** Set when a terminal command ends the run. */
  end?: { status: RunStatus; result: Uint8Array | null; failure: Uint8Array | null; continuedAsRunId?: string };
  /** Set by continue_as_new: the run to start in the same transaction. */
  continueAsNew?: {
    runId: string;
    input: Payload | undefined;
    workflowName: string;
    taskQueue: string;
    carried: CarriedInboxEvent[];
    /** The code was told of the run's cancellation before it continued: the new run does not inherit it (decision 0031). */
    cancelRequestDelivered: boolean;
    /** Updates handed out with this task that the code never saw: moved to the new run, not recorded (decision 0031). */
    undelivered: UndeliveredUpdates;
  };
  /** undefined: unchanged; null: cleared. */
  customStatus?: string | null;
  labels?: Record<string, string>;
  /** Update ids this task completes (complete_update): checked against the database (engine/updates.ts). */
  completedUpdates?: string[];
}

/**
 * The commands that end the run: each must be a task's last command, and a
 * task holding one ends the run (engine/completion.ts). One definition for both.
 */
const ENDS_RUN: ReadonlySet<NonNullable<Command["command"]["case"]>> = new Set(["completeRun", "failRun", "cancelRun", "continueAsNew"]);

export function endsRun(kind: Command["command"]["case"]): boolean {
  return kind !== undefined && ENDS_RUN.has(kind);
}

const CLOSE_POLICIES = [ParentClosePolicy.UNSPECIFIED, ParentClosePolicy.CANCEL, ParentClosePolicy.ABANDON];

export interface PlanContext {
  taskQueue: string;
  workflowName: string;
  priority: number;
  labels: Record<string, string>;
  /** The task's workflow clock: timers fire at task time + duration. */
  taskTime: Date;
  limits: Limits;
}

/** Seqs are stored in integer columns (timers, activity tasks, children's parent_seq). */
const MAX_SEQ = 2 ** 31 - 1;

function checkSeq(field: string, seq: number): void {
  if (!Number.isInteger(seq) || seq <= 0 || seq > MAX_SEQ) throw invalid(`${field}.seq must be from 1 to ${MAX_SEQ}, got ${seq}`);
}

/** Validates the commands of one completion and turns them into writes. */
export function planCommands(commands: Command[], run: PlanContext): CommandPlan {
  if (commands.length > MAX_COMMANDS_PER_TASK) {
    throw invalid(`commands has ${commands.length} entries, at most ${MAX_COMMANDS_PER_TASK} per task`);
  }
  const plan: CommandPlan = {
    events: [],
    activities: [],
    timers: [],
    cancelTimers: [],
    cancelActivities: [],
    children: [],
    cancelChildren: [],
    newSeqs: [],
    references: [],
  };
  // Seqs created in this task, by the event kind that created them.
  const created = new Map<number, string>();
  const claimSeq = (field: string, seq: number, attributes: EventInit) => {
    checkSeq(field, seq);
    if (created.has(seq)) throw invalid(`${field}.seq ${seq} is used by an earlier command of this task; each seq is unique within a run`);
    const event = encodeEvent(attributes, { dedupKey: dedupKey(DedupKind.SEQ, seq) });
    created.set(seq, event.kind);
    plan.newSeqs.push(seq);
    plan.events.push(event);
  };
  const refer = (field: string, seq: number, kind: string, what: string, orKind?: string) => {
    checkSeq(field, seq);
    const local = created.get(seq);
    if (local === undefined) plan.references.push({ field, seq, kind, ...(orKind ? { orKind } : {}) });
    else if (local !== kind && local !== orKind) throw invalid(`${field}.seq ${seq} is not ${what} (it is ${local} in this task)`);
  };
  commands.forEach((command, index) => {
    const field = `commands[${index}]`;
    const { case: kind, value } = command.command;
    if (kind === undefined) throw invalid(`${field} has no command set`);
    if (endsRun(kind) && index !== commands.length - 1) {
      throw invalid(`${field} is a terminal command (${kind}) but is not the last command; a terminal command must be last`);
    }
    switch (kind) {
      case "scheduleActivity": {
        const activity = planActivity(`${field}.schedule_activity`, value, run);
        claimSeq(`${field}.schedule_activity`, value.seq, { case: "activityScheduled", value: activity.attributes });
        plan.activities.push(activity.task);
        break;
      }
      case "requestCancelActivity":
        refer(`${field}.request_cancel_activity`, value.seq, "activity_scheduled", "an activity call");
        plan.cancelActivities.push(value.seq);
        plan.events.push(encodeEvent({ case: "activityCancelRequested", value: { seq: value.seq } }));
        break;
      case "startTimer": {
        const f = `${field}.start_timer`;
        if (value.fireTime && value.duration) throw invalid(`${f} sets both duration and fire_time; set exactly one`);
        const at = timerFireTime(`${f}.fire_time`, value.fireTime, run.taskTime);
        const ms = durationField(`${f}.duration`, value.duration, { allowZero: true });
        if (!at && ms === undefined) throw invalid(`${f} needs a duration or a fire_time`);
        const fireAt = at ?? new Date(run.taskTime.getTime() + ms!);
        claimSeq(f, value.seq, { case: "timerStarted", value: { seq: value.seq, fireTime: timestampFromDate(fireAt) } });
        plan.timers.push({ seq: value.seq, kind: "timer", fireAt, eventId: null, event: timerEvent({ case: "timerFired", value: { seq: value.seq } }) });
        break;
      }
      case "cancelTimer":
        // Also an event wait's time-out: the SDK drops it once an event satisfied the wait (decision 0022).
        refer(`${field}.cancel_timer`, value.seq, "timer_started", "a timer or an event wait", "event_wait_started");
        plan.cancelTimers.push(value.seq);
        plan.events.push(encodeEvent({ case: "timerCancelled", value: { seq: value.seq } }));
        break;
      case "waitForEvent": {
        const f = `${field}.wait_for_event`;
        // A command from before names existed names the event in event_id (docs/worker-protocol.md).
        const eventName = value.eventName !== ""
          ? requireString(`${f}.event_name`, value.eventName)
          : requireString(`${f}.event_name (or, from older SDKs, ${f}.event_id)`, value.eventId);
        // Unset: wait forever. Zero: time out at once (a timer due at task time), like a
        // zero-timeout condition in Temporal (an SDK issues no wait for an event it already received).
        const ms = durationField(`${f}.timeout`, value.timeout, { allowZero: true });
        const timeoutAt = ms === undefined ? undefined : new Date(run.taskTime.getTime() + ms);
        claimSeq(f, value.seq, {
          case: "eventWaitStarted",
          value: { seq: value.seq, eventId: eventName, eventName, timeoutTime: timeoutAt ? timestampFromDate(timeoutAt) : undefined },
        });
        if (timeoutAt) {
          plan.timers.push({
            seq: value.seq,
            kind: "event_wait",
            fireAt: timeoutAt,
            eventId: eventName,
            event: timerEvent({ case: "eventWaitTimedOut", value: { seq: value.seq } }),
          });
        }
        break;
      }
      case "startChildRun": {
        const child = planChild(`${field}.start_child_run`, value, run);
        claimSeq(`${field}.start_child_run`, value.seq, {
          case: "childRunScheduled",
          value: {
            ...child,
            parentClosePolicy: child.parentClosePolicy === "abandon" ? ParentClosePolicy.ABANDON : ParentClosePolicy.CANCEL,
          },
        });
        plan.children.push(child);
        break;
      }
      case "requestCancelChildRun":
        refer(`${field}.request_cancel_child_run`, value.seq, "child_run_scheduled", "a child run");
        plan.cancelChildren.push(value.seq);
        plan.events.push(encodeEvent({ case: "childRunCancelRequested", value: { seq: value.seq } }));
        break;
      case "recordSideEffect":
        payloadField(`${field}.record_side_effect.value`, value.value, run.limits);
        claimSeq(`${field}.record_side_effect`, value.seq, { case: "sideEffectRecorded", value: { seq: value.seq, value: value.value } });
        break;
      case "recordPatchMarker":
        plan.events.push(encodeEvent(planPatchMarker(`${field}.record_patch_marker`, value)));
        break;
      case "setCustomStatus":
        optionalText(`${field}.set_custom_status.custom_status`, value.customStatus, MAX_CUSTOM_STATUS_LENGTH);
        plan.customStatus = value.customStatus === "" ? null : value.customStatus;
        plan.events.push(encodeEvent({ case: "customStatusSet", value: { customStatus: value.customStatus } }));
        break;
      case "upsertLabels": {
        const f = `${field}.upsert_labels.labels`;
        plan.labels = { ...plan.labels, ...labelsField(f, value.labels) };
        const count = Object.keys({ ...run.labels, ...plan.labels }).length;
        if (count > MAX_LABELS) throw invalid(`${f} would give the run ${count} labels, at most ${MAX_LABELS}`);
        plan.events.push(encodeEvent({ case: "labelsUpserted", value: { labels: value.labels } }));
        break;
      }
      case "completeUpdate": {
        plan.completedUpdates ??= [];
        plan.events.push(planCompleteUpdate(`${field}.complete_update`, value, run.limits, new Set(plan.completedUpdates)));
        plan.completedUpdates.push(value.updateId);
        break;
      }
      case "completeRun":
        payloadField(`${field}.complete_run.result`, value.result, run.limits);
        plan.end = { status: RunStatus.COMPLETED, result: encodePayload(value.result), failure: null };
        plan.events.push(encodeEvent({ case: "runCompleted", value: { result: value.result } }));
        break;
      case "failRun": {
        const failure =
          failureField(`${field}.fail_run.failure`, value.failure, run.limits) ??
          create(FailureSchema, { message: "workflow failed without a failure" });
        plan.end = { status: RunStatus.FAILED, result: null, failure: encodeFailure(failure) };
        plan.events.push(encodeEvent({ case: "runFailed", value: { failure } }));
        break;
      }
      case "cancelRun": {
        payloadField(`${field}.cancel_run.details`, value.details, run.limits);
        const failure = create(FailureSchema, {
          message: "run cancelled",
          type: "CancelledError",
          kind: FailureKind.CANCELLED,
          details: value.details,
        });
        plan.end = { status: RunStatus.CANCELLED, result: null, failure: encodeFailure(failure) };
        plan.events.push(encodeEvent({ case: "runCancelled", value: { details: value.details } }));
        break;
      }
      case "continueAsNew": {
        const f = `${field}.continue_as_new`;
        const workflowName = optionalString(`${f}.workflow_name`, value.workflowName) || run.workflowName;
        const taskQueue = queueName(`${f}.task_queue`, value.taskQueue, run.taskQueue);
        payloadField(`${f}.input`, value.input, run.limits);
        const carried = planCarriedEvents(`${f}.carried_events`, value.carriedEvents, run.limits);
        const undelivered = undeliveredUpdatesField(`${f}.undelivered_update_ids`, value.undeliveredUpdateIds);
        const runId = uuidv7();
        plan.continueAsNew = {
          runId,
          input: value.input,
          workflowName,
          taskQueue,
          carried,
          cancelRequestDelivered: value.cancelRequestDelivered,
          undelivered,
        };
        plan.end = { status: RunStatus.CONTINUED_AS_NEW, result: null, failure: null, continuedAsRunId: runId };
        plan.events.push(encodeEvent({ case: "runContinuedAsNew", value: { newRunId: runId, input: value.input } }));
        break;
      }
    }
  });
  return plan;
}

/**
 * A timer's absolute fire time, within the span durations may have
 * (MAX_DURATION_MS) on either side of the task time. Past that a date is
 * almost surely a unit slip (seconds for milliseconds) and could leave
 * Postgres's timestamp range, which would fail every retry of the task.
 */
function timerFireTime(field: string, value: Parameters<typeof timestampField>[1], taskTime: Date): Date | undefined {
  const at = timestampField(field, value);
  if (at && Math.abs(at.getTime() - taskTime.getTime()) > MAX_DURATION_MS) {
    const years = Math.round(MAX_DURATION_MS / (365 * 24 * 3600_000));
    throw invalid(`${field} ${at.toISOString()} is more than ${years} years from the task time ${taskTime.toISOString()}`);
  }
  return at;
}

/** A timer's inbox event: HistoryEvent bytes without sequence and time (set when it moves into history). */
function timerEvent(attributes: EventInit): Uint8Array {
  return encodeEvent(attributes).event;
}

function planChild(
  field: string,
  command: Extract<Command["command"], { case: "startChildRun" }>["value"],
  run: PlanContext,
): PlannedChild {
  const labels = labelsField(`${field}.labels`, command.labels);
  const policy = enumField(`${field}.parent_close_policy`, command.parentClosePolicy, CLOSE_POLICIES);
  return {
    seq: command.seq,
    workflowName: requireString(`${field}.workflow_name`, command.workflowName),
    instanceId: requireString(`${field}.instance_id`, command.instanceId),
    taskQueue: queueName(`${field}.task_queue`, command.taskQueue, run.taskQueue),
    input: payloadField(`${field}.input`, command.input, run.limits),
    // A proto map cannot be unset: an empty map means "the parent's labels".
    labels: Object.keys(labels).length > 0 ? labels : { ...run.labels },
    priority: command.priority === undefined ? run.priority : intInRange(`${field}.priority`, command.priority, 0, 100),
    parentClosePolicy: policy === ParentClosePolicy.ABANDON ? "abandon" : "cancel",
    runTimeoutMs: runTimeoutField(`${field}.run_timeout`, command.runTimeout),
    workflowTaskTimeoutMs: workflowTaskTimeoutField(`${field}.workflow_task_timeout`, command.workflowTaskTimeout),
  };
}

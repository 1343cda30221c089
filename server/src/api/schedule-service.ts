/** ScheduleService: validation and proto mapping around engine/schedules.ts. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import {
  ScheduleActionKind,
  ScheduleOverlapPolicy,
  ScheduleService,
  ScheduleSkipReason,
  type Schedule,
  type ScheduleSchema,
  type ServiceHandlers,
} from "@dex/proto";
import type { Engine } from "../engine/context.js";
import { DEFAULT_PRIORITY, DEFAULT_QUEUE } from "../engine/model.js";
import type { OverlapPolicy, SkipReason } from "../engine/schedules-firing.js";
import { MAX_INTERVAL_MS, MAX_JITTER_MS } from "../engine/schedules-spec.js";
import {
  backfillSchedule,
  createSchedule,
  deleteSchedule,
  describeSchedule,
  listSchedules,
  pauseSchedule,
  resumeSchedule,
  triggerSchedule,
  updateSchedule,
  type ScheduleDefinition,
  type ScheduleView,
} from "../engine/schedules.js";
import {
  durationField,
  intInRange,
  invalid,
  labelsField,
  optionalString,
  optionalText,
  payloadField,
  queueName,
  requireString,
  timestampField,
} from "../engine/validation.js";
import type { Limits } from "../engine/limits.js";
import { ts } from "./convert.js";

/** Room for `-<ISO time>` (25 characters) within an instance id's 255. */
export const MAX_SCHEDULE_ID_LENGTH = 200;
export const MAX_NOTE_LENGTH = 1_000;
export const MAX_REMAINING_ACTIONS = 1_000_000;
const DEFAULT_CATCHUP_WINDOW_MS = 60_000;
const MIN_CATCHUP_WINDOW_MS = 1_000;
const MAX_CATCHUP_WINDOW_MS = 365 * 86_400_000;
const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1_000;

const POLICIES: Record<number, OverlapPolicy> = {
  [ScheduleOverlapPolicy.SKIP]: "skip",
  [ScheduleOverlapPolicy.BUFFER_ONE]: "buffer_one",
  [ScheduleOverlapPolicy.BUFFER_ALL]: "buffer_all",
  [ScheduleOverlapPolicy.CANCEL_OTHER]: "cancel_other",
  [ScheduleOverlapPolicy.TERMINATE_OTHER]: "terminate_other",
  [ScheduleOverlapPolicy.ALLOW_ALL]: "allow_all",
};
const SKIP_REASONS: Record<SkipReason, ScheduleSkipReason> = {
  overlap: ScheduleSkipReason.OVERLAP,
  paused: ScheduleSkipReason.PAUSED,
  catchup_window: ScheduleSkipReason.CATCHUP_WINDOW,
  task_queue_missing: ScheduleSkipReason.TASK_QUEUE_MISSING,
};
const KINDS = { scheduled: ScheduleActionKind.SCHEDULED, triggered: ScheduleActionKind.TRIGGERED, backfill: ScheduleActionKind.BACKFILL } as const;

function scheduleId(value: string): string {
  return requireString("schedule_id", value, MAX_SCHEDULE_ID_LENGTH);
}

/** undefined: unset (the caller's default). */
function overlapPolicy(field: string, value: number): OverlapPolicy | undefined {
  if (value === ScheduleOverlapPolicy.UNSPECIFIED) return undefined;
  const policy = POLICIES[value];
  if (!policy) throw invalid(`${field} has an unknown value ${value}`);
  return policy;
}

function policyToProto(policy: string): ScheduleOverlapPolicy {
  const entry = Object.entries(POLICIES).find(([, p]) => p === policy);
  return entry ? Number(entry[0]) : ScheduleOverlapPolicy.UNSPECIFIED;
}

function definition(schedule: Schedule | undefined, limits: Limits): ScheduleDefinition {
  if (!schedule) throw invalid("schedule is required: its spec (when) and action (what to start)");
  const spec = schedule.spec;
  if (!spec) throw invalid("schedule.spec is required: at least one cron expression or interval");
  const action = schedule.action;
  if (!action) throw invalid("schedule.action is required: the workflow to start");
  const f = "schedule.spec";
  return {
    spec: {
      cron: spec.cronExpressions.map((c, i) => optionalString(`${f}.cron_expressions[${i}]`, c, 255)),
      intervals: spec.intervals.map((interval, i) => {
        const everyMs = durationField(`${f}.intervals[${i}].every`, interval.every, { maxMs: MAX_INTERVAL_MS });
        if (everyMs === undefined) throw invalid(`${f}.intervals[${i}].every is required, e.g. 60s`);
        return { everyMs, offsetMs: durationField(`${f}.intervals[${i}].offset`, interval.offset, { maxMs: MAX_INTERVAL_MS }) ?? 0 };
      }),
      timeZone: optionalString(`${f}.time_zone`, spec.timeZone, 64),
      startMs: timestampField(`${f}.start_time`, spec.startTime)?.getTime() ?? null,
      endMs: timestampField(`${f}.end_time`, spec.endTime)?.getTime() ?? null,
      jitterMs: durationField(`${f}.jitter`, spec.jitter, { maxMs: MAX_JITTER_MS }) ?? 0,
    },
    action: {
      workflowName: requireString("schedule.action.workflow_name", action.workflowName),
      taskQueue: queueName("schedule.action.task_queue", action.taskQueue, DEFAULT_QUEUE),
      labels: labelsField("schedule.action.labels", action.labels),
      priority: action.priority === undefined ? DEFAULT_PRIORITY : intInRange("schedule.action.priority", action.priority, 0, 100),
    },
    input: payloadField("schedule.action.input", action.input, limits),
    overlapPolicy: overlapPolicy("schedule.policies.overlap_policy", schedule.policies?.overlapPolicy ?? 0) ?? "skip",
    catchupWindowMs: catchupWindow(schedule.policies?.catchupWindow),
  };
}

function catchupWindow(value: Parameters<typeof durationField>[1]): number {
  const ms = durationField("schedule.policies.catchup_window", value, { maxMs: MAX_CATCHUP_WINDOW_MS });
  if (ms === undefined) return DEFAULT_CATCHUP_WINDOW_MS;
  if (ms < MIN_CATCHUP_WINDOW_MS) throw invalid(`schedule.policies.catchup_window must be at least 1s, got ${ms} ms`);
  return Math.round(ms);
}

function remainingActions(value: number | undefined): number | null {
  return value === undefined ? null : intInRange("remaining_actions", value, 0, MAX_REMAINING_ACTIONS);
}

export function scheduleHandlers(engine: Engine): ServiceHandlers<typeof ScheduleService> {
  return {
    async createSchedule(req) {
      await createSchedule(engine, {
        id: scheduleId(req.scheduleId),
        definition: definition(req.schedule, engine.limits),
        paused: req.paused,
        note: optionalText("note", req.note, MAX_NOTE_LENGTH),
        remainingActions: remainingActions(req.remainingActions),
      });
      return {};
    },

    async updateSchedule(req) {
      if (req.unlimitedActions && req.remainingActions !== undefined) {
        throw invalid("remaining_actions and unlimited_actions contradict each other; set one of them");
      }
      await updateSchedule(engine, {
        id: scheduleId(req.scheduleId),
        definition: definition(req.schedule, engine.limits),
        remainingActions: req.unlimitedActions ? null : req.remainingActions === undefined ? undefined : remainingActions(req.remainingActions),
      });
      return {};
    },

    async describeSchedule(req) {
      const view = await describeSchedule(engine, scheduleId(req.scheduleId));
      return { scheduleId: view.record.id, schedule: scheduleToProto(view), info: infoToProto(view) };
    },

    async listSchedules(req) {
      const pageSize = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : intInRange("page_size", req.pageSize, 1, MAX_PAGE_SIZE);
      const after = req.pageToken === "" ? null : decodeToken(req.pageToken);
      const page = await listSchedules(engine, after, pageSize + 1);
      const more = page.length > pageSize;
      const shown = page.slice(0, pageSize);
      return {
        schedules: shown.map((v) => ({
          scheduleId: v.record.id,
          workflowName: v.action.workflowName,
          paused: v.record.paused,
          note: v.record.note,
          nextActionTime: v.nextDueMs[0] === undefined ? undefined : ts(new Date(v.nextDueMs[0])),
          actionCount: BigInt(v.record.actionCount),
        })),
        nextPageToken: more ? Buffer.from(shown[shown.length - 1]!.record.id, "utf8").toString("base64url") : "",
      };
    },

    async pauseSchedule(req) {
      await pauseSchedule(engine, { id: scheduleId(req.scheduleId), note: optionalText("note", req.note, MAX_NOTE_LENGTH) });
      return {};
    },

    async resumeSchedule(req) {
      await resumeSchedule(engine, { id: scheduleId(req.scheduleId), note: optionalText("note", req.note, MAX_NOTE_LENGTH) });
      return {};
    },

    async triggerSchedule(req) {
      const outcome = await triggerSchedule(engine, {
        id: scheduleId(req.scheduleId),
        overlapPolicy: overlapPolicy("overlap_policy", req.overlapPolicy),
        requestId: optionalString("request_id", req.requestId),
      });
      return {
        runId: outcome.runId ?? "",
        nominalTime: ts(new Date(outcome.nominalMs)),
        buffered: outcome.buffered,
        skipReason: outcome.skipped ? SKIP_REASONS[outcome.skipped] : ScheduleSkipReason.UNSPECIFIED,
      };
    },

    async backfillSchedule(req) {
      const from = timestampField("start_time", req.startTime);
      const to = timestampField("end_time", req.endTime);
      if (!from || !to) throw invalid("start_time and end_time are required: the range of nominal times to fire");
      return backfillSchedule(engine, {
        id: scheduleId(req.scheduleId),
        fromMs: from.getTime(),
        toMs: to.getTime(),
        overlapPolicy: overlapPolicy("overlap_policy", req.overlapPolicy),
      });
    },

    async deleteSchedule(req) {
      await deleteSchedule(engine, scheduleId(req.scheduleId));
      return {};
    },
  };
}

/**
 * A token is a schedule id in base64url (nextPageToken above). What it decodes to reaches SQL, so it
 * must be what a token holds: it re-encodes to itself (valid UTF-8) and is a valid schedule id (no
 * control characters: a NUL would fail in Postgres as INTERNAL instead of answering INVALID_ARGUMENT).
 */
function decodeToken(token: string): string {
  const notAToken = () => invalid("page_token is not a token from a previous ListSchedules answer; pass next_page_token unchanged");
  if (token.length > 400 || !/^[A-Za-z0-9_-]+$/.test(token)) throw notAToken();
  const id = Buffer.from(token, "base64url").toString("utf8");
  if (Buffer.from(id, "utf8").toString("base64url") !== token) throw notAToken();
  try {
    return scheduleId(id);
  } catch {
    throw notAToken();
  }
}

function scheduleToProto(view: ScheduleView): MessageInitShape<typeof ScheduleSchema> {
  const { spec, action, record } = view;
  return {
    spec: {
      cronExpressions: spec.cron,
      intervals: spec.intervals.map((i) => ({ every: durationFromMs(i.everyMs), offset: durationFromMs(i.offsetMs) })),
      timeZone: spec.timeZone,
      startTime: spec.startMs === null ? undefined : ts(new Date(spec.startMs)),
      endTime: spec.endMs === null ? undefined : ts(new Date(spec.endMs)),
      jitter: durationFromMs(spec.jitterMs),
    },
    action: {
      workflowName: action.workflowName,
      taskQueue: action.taskQueue,
      labels: action.labels,
      priority: action.priority,
      input: view.input,
    },
    policies: { overlapPolicy: policyToProto(record.overlapPolicy), catchupWindow: durationFromMs(record.catchupWindowMs) },
  };
}

function infoToProto(view: ScheduleView) {
  const r = view.record;
  return {
    paused: r.paused,
    note: r.note,
    remainingActions: r.remainingActions ?? undefined,
    nextActionTimes: view.nextDueMs.map((ms) => ts(new Date(ms))!),
    recentActions: r.recentActions.map((a) => ({
      nominalTime: ts(new Date(a.nominal)),
      actualTime: ts(new Date(a.actual)),
      runId: a.runId,
      instanceId: a.instanceId,
      kind: KINDS[a.kind],
    })),
    recentSkips: r.recentSkips.map((s) => ({
      nominalTime: ts(new Date(s.nominal)),
      reason: SKIP_REASONS[s.reason],
      time: ts(new Date(s.at)),
      count: BigInt(s.count),
    })),
    bufferedTimes: r.buffered.map((b) => ts(new Date(b.at))!),
    actionCount: BigInt(r.actionCount),
    overlapSkipped: BigInt(r.overlapSkipped),
    pausedSkipped: BigInt(r.pausedSkipped),
    catchupWindowMissed: BigInt(r.catchupWindowMissed),
    createTime: ts(r.createdAt),
    updateTime: ts(r.updatedAt),
  };
}

/**
 * `client.schedule`: create schedules and work with them through handles, thin over
 * dex.v1.ScheduleService. Durations are milliseconds, times are Dates.
 */
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  ScheduleActionKind,
  ScheduleOverlapPolicy,
  ScheduleSkipReason,
  type DescribeScheduleResponse,
  type ScheduleSchema,
} from "@dex/proto";
import { encodePayload } from "../common/payload.js";
import type { Workflow } from "../workflow/types.js";
import type { Caller } from "./handle.js";

/** What a firing does while the schedule's previous run is still open (default "skip"). */
export type OverlapPolicy = "skip" | "buffer-one" | "buffer-all" | "cancel-other" | "terminate-other" | "allow-all";

export interface ScheduleSpecOptions {
  /** Cron expressions: 5 fields, 6 with seconds first, or @hourly-style macros. */
  cron?: string | string[];
  /** Fixed intervals, aligned to the Unix epoch plus `offsetMs`. */
  intervals?: Array<{ everyMs: number; offsetMs?: number }>;
  /** IANA time zone for the cron expressions; default UTC. */
  timeZone?: string;
  /** No firing before this. */
  startAt?: Date;
  /** No firing after this. */
  endAt?: Date;
  /** Each firing starts up to this much after its nominal time (deterministic per time). Default 0. */
  jitterMs?: number;
}

export interface ScheduleDefinition<I = unknown> {
  spec: ScheduleSpecOptions;
  /** The workflow each firing starts. */
  action: { workflow: Workflow | string; taskQueue?: string; input?: I; labels?: Record<string, string>; priority?: number };
  /** Default "skip". */
  overlap?: OverlapPolicy;
  /** How late a firing missed while no server ran may still start. Default 60 000 ms. */
  catchupWindowMs?: number;
}

export interface CreateScheduleOptions<I = unknown> extends ScheduleDefinition<I> {
  scheduleId: string;
  /** Start paused. */
  paused?: boolean;
  note?: string;
  /** Stop after this many scheduled actions; default no limit. */
  remainingActions?: number;
}

export interface ScheduleAction {
  nominalTime: Date;
  actualTime: Date;
  runId: string;
  instanceId: string;
  kind: "scheduled" | "triggered" | "backfill";
}

export interface ScheduleSkip {
  nominalTime: Date;
  reason: "overlap" | "paused" | "catchup-window" | "task-queue-missing";
  count: number;
}

export interface ScheduleDescription {
  scheduleId: string;
  paused: boolean;
  note: string;
  remainingActions?: number;
  nextActionTimes: Date[];
  recentActions: ScheduleAction[];
  recentSkips: ScheduleSkip[];
  bufferedTimes: Date[];
  actionCount: number;
  overlapSkipped: number;
  pausedSkipped: number;
  catchupWindowMissed: number;
  /** The whole answer, as the server sent it (the definition included). */
  raw: DescribeScheduleResponse;
}

export interface ScheduleHandle {
  readonly scheduleId: string;
  describe(): Promise<ScheduleDescription>;
  /** Replaces the definition; `remainingActions: null` removes the limit. */
  update(definition: ScheduleDefinition & { remainingActions?: number | null }): Promise<void>;
  pause(note?: string): Promise<void>;
  resume(note?: string): Promise<void>;
  /** Fires now. `runId` is undefined when the firing was buffered or skipped. */
  trigger(options?: { overlap?: OverlapPolicy }): Promise<{ runId?: string; buffered: boolean; skipReason?: ScheduleSkip["reason"] }>;
  /** Fires every nominal time in [start, end] (at most 1,000). */
  backfill(options: { start: Date; end: Date; overlap?: OverlapPolicy }): Promise<{ started: number; buffered: number; skipped: number }>;
  delete(): Promise<void>;
}

export interface ScheduleClient {
  create<I = unknown>(options: CreateScheduleOptions<I>): Promise<ScheduleHandle>;
  getHandle(scheduleId: string): ScheduleHandle;
  list(options?: { pageSize?: number; pageToken?: string }): Promise<{
    schedules: Array<{ scheduleId: string; workflowName: string; paused: boolean; nextActionTime?: Date; actionCount: number }>;
    nextPageToken?: string;
  }>;
}

const POLICIES: Record<OverlapPolicy, ScheduleOverlapPolicy> = {
  skip: ScheduleOverlapPolicy.SKIP,
  "buffer-one": ScheduleOverlapPolicy.BUFFER_ONE,
  "buffer-all": ScheduleOverlapPolicy.BUFFER_ALL,
  "cancel-other": ScheduleOverlapPolicy.CANCEL_OTHER,
  "terminate-other": ScheduleOverlapPolicy.TERMINATE_OTHER,
  "allow-all": ScheduleOverlapPolicy.ALLOW_ALL,
};
const SKIPS: Record<number, ScheduleSkip["reason"]> = {
  [ScheduleSkipReason.OVERLAP]: "overlap",
  [ScheduleSkipReason.PAUSED]: "paused",
  [ScheduleSkipReason.CATCHUP_WINDOW]: "catchup-window",
  [ScheduleSkipReason.TASK_QUEUE_MISSING]: "task-queue-missing",
};
const KINDS: Record<number, ScheduleAction["kind"]> = {
  [ScheduleActionKind.SCHEDULED]: "scheduled",
  [ScheduleActionKind.TRIGGERED]: "triggered",
  [ScheduleActionKind.BACKFILL]: "backfill",
};

function policy(value: OverlapPolicy | undefined): ScheduleOverlapPolicy {
  if (value === undefined) return ScheduleOverlapPolicy.UNSPECIFIED;
  if (!Object.hasOwn(POLICIES, value)) {
    throw new TypeError(`overlap must be one of ${Object.keys(POLICIES).map((k) => JSON.stringify(k)).join(", ")}, got ${JSON.stringify(value)}`);
  }
  return POLICIES[value];
}

function scheduleMessage(d: ScheduleDefinition): MessageInitShape<typeof ScheduleSchema> {
  const workflowName = typeof d.action.workflow === "string" ? d.action.workflow : d.action.workflow.name;
  if (!workflowName) throw new TypeError("schedule action: pass the workflow's registered name, not an anonymous function");
  const s = d.spec;
  return {
    spec: {
      cronExpressions: s.cron === undefined ? [] : [s.cron].flat(),
      intervals: (s.intervals ?? []).map((i) => ({ every: durationFromMs(i.everyMs), offset: durationFromMs(i.offsetMs ?? 0) })),
      timeZone: s.timeZone ?? "",
      startTime: s.startAt ? timestampFromDate(s.startAt) : undefined,
      endTime: s.endAt ? timestampFromDate(s.endAt) : undefined,
      jitter: s.jitterMs ? durationFromMs(s.jitterMs) : undefined,
    },
    action: {
      workflowName,
      taskQueue: d.action.taskQueue ?? "",
      input: encodePayload(d.action.input),
      labels: d.action.labels ?? {},
      priority: d.action.priority,
    },
    policies: {
      overlapPolicy: policy(d.overlap),
      catchupWindow: d.catchupWindowMs === undefined ? undefined : durationFromMs(d.catchupWindowMs),
    },
  };
}

const date = (t: Timestamp | undefined): Date => (t ? timestampDate(t) : new Date(0));

function description(r: DescribeScheduleResponse): ScheduleDescription {
  const info = r.info;
  const result: ScheduleDescription = {
    scheduleId: r.scheduleId,
    paused: info?.paused ?? false,
    note: info?.note ?? "",
    nextActionTimes: (info?.nextActionTimes ?? []).map(date),
    recentActions: (info?.recentActions ?? []).map((a) => ({
      nominalTime: date(a.nominalTime),
      actualTime: date(a.actualTime),
      runId: a.runId,
      instanceId: a.instanceId,
      kind: KINDS[a.kind] ?? "scheduled",
    })),
    recentSkips: (info?.recentSkips ?? []).map((s) => ({ nominalTime: date(s.nominalTime), reason: SKIPS[s.reason] ?? "overlap", count: Number(s.count) })),
    bufferedTimes: (info?.bufferedTimes ?? []).map(date),
    actionCount: Number(info?.actionCount ?? 0n),
    overlapSkipped: Number(info?.overlapSkipped ?? 0n),
    pausedSkipped: Number(info?.pausedSkipped ?? 0n),
    catchupWindowMissed: Number(info?.catchupWindowMissed ?? 0n),
    raw: r,
  };
  if (info?.remainingActions !== undefined) result.remainingActions = info.remainingActions;
  return result;
}

export function createScheduleClient(caller: Caller): ScheduleClient {
  const { connection, call } = caller;
  const schedules = connection.schedules;

  const getHandle = (scheduleId: string): ScheduleHandle => ({
    scheduleId,
    describe: async () => description(await call(() => schedules.describeSchedule({ scheduleId }))),
    async update(d) {
      const limit = d.remainingActions;
      // A replace: repeating it changes nothing more.
      await call(() =>
        schedules.updateSchedule({
          scheduleId,
          schedule: scheduleMessage(d),
          remainingActions: limit === null ? undefined : limit,
          unlimitedActions: limit === null,
        }),
      );
    },
    pause: async (note = "") => void (await call(() => schedules.pauseSchedule({ scheduleId, note }))),
    resume: async (note = "") => void (await call(() => schedules.resumeSchedule({ scheduleId, note }))),
    async trigger(options = {}) {
      // The request id, the same on every try, makes a retry answer the first try's run.
      const requestId = randomUUID();
      const r = await call(() => schedules.triggerSchedule({ scheduleId, overlapPolicy: policy(options.overlap), requestId }));
      const result: { runId?: string; buffered: boolean; skipReason?: ScheduleSkip["reason"] } = { buffered: r.buffered };
      if (r.runId) result.runId = r.runId;
      if (SKIPS[r.skipReason]) result.skipReason = SKIPS[r.skipReason];
      return result;
    },
    async backfill(options) {
      const request = {
        scheduleId,
        startTime: timestampFromDate(options.start),
        endTime: timestampFromDate(options.end),
        overlapPolicy: policy(options.overlap),
      };
      // Retried only when surely unsent: a repeat would buffer the range's firings twice.
      const r = await call(() => schedules.backfillSchedule(request), undefined, true);
      return { started: r.started, buffered: r.buffered, skipped: r.skipped };
    },
    delete: async () => void (await call(() => schedules.deleteSchedule({ scheduleId }), undefined, true)),
  });

  return {
    async create(options) {
      const request = {
        scheduleId: options.scheduleId,
        schedule: scheduleMessage(options),
        paused: options.paused ?? false,
        note: options.note ?? "",
        remainingActions: options.remainingActions,
      };
      // A repeat of a create that landed would answer ALREADY_EXISTS: only surely-unsent tries are retried.
      await call(() => schedules.createSchedule(request), undefined, true);
      return getHandle(options.scheduleId);
    },
    getHandle,
    async list(options = {}) {
      const r = await call(() => schedules.listSchedules({ pageSize: options.pageSize ?? 0, pageToken: options.pageToken ?? "" }));
      const result: Awaited<ReturnType<ScheduleClient["list"]>> = {
        schedules: r.schedules.map((s) => ({
          scheduleId: s.scheduleId,
          workflowName: s.workflowName,
          paused: s.paused,
          ...(s.nextActionTime ? { nextActionTime: timestampDate(s.nextActionTime) } : {}),
          actionCount: Number(s.actionCount),
        })),
      };
      if (r.nextPageToken) result.nextPageToken = r.nextPageToken;
      return result;
    },
  };
}

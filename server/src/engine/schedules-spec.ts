/**
 * When a schedule fires: its nominal times (cron expressions read in a time
 * zone, and fixed intervals aligned to the Unix epoch plus an offset, between
 * a start and an end time) and each firing's jitter. Pure: no I/O, no clock;
 * every server computes the same times from the same spec.
 *
 * Cron parsing, time zones and DST are cron-parser's (decision 0020 says why
 * it and not croner): a wall-clock time skipped by a spring-forward fires once
 * just after the gap, and a fixed time in a repeated fall-back hour fires once.
 */
import { createHash } from "node:crypto";
import { CronExpressionParser, type CronExpression } from "cron-parser";
import { invalid } from "./validation.js";

export interface IntervalSpec {
  everyMs: number;
  offsetMs: number;
}

/** A validated ScheduleSpec, as stored (dex.schedules.spec). */
export interface ScheduleSpec {
  cron: string[];
  intervals: IntervalSpec[];
  /** IANA name; "" is UTC. */
  timeZone: string;
  /** Epoch ms, or null for no limit. */
  startMs: number | null;
  endMs: number | null;
  jitterMs: number;
}

export const MAX_CRON_EXPRESSIONS = 10;
export const MAX_INTERVALS = 10;
export const MAX_CRON_LENGTH = 255;
export const MAX_TIME_ZONE_LENGTH = 64;
export const MIN_INTERVAL_MS = 1_000;
export const MAX_INTERVAL_MS = 3_650 * 86_400_000;
export const MAX_JITTER_MS = 86_400_000;

const MACROS = new Set(["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]);

/** Checks a spec's parts, naming the field and what is allowed. */
export function validateSpec(spec: ScheduleSpec, field = "schedule.spec"): ScheduleSpec {
  if (spec.cron.length === 0 && spec.intervals.length === 0) {
    throw invalid(`${field} needs at least one of cron_expressions or intervals, e.g. "0 * * * *" or every 60s`);
  }
  if (spec.cron.length > MAX_CRON_EXPRESSIONS) throw invalid(`${field}.cron_expressions: at most ${MAX_CRON_EXPRESSIONS}, got ${spec.cron.length}`);
  if (spec.intervals.length > MAX_INTERVALS) throw invalid(`${field}.intervals: at most ${MAX_INTERVALS}, got ${spec.intervals.length}`);
  if (spec.timeZone.length > MAX_TIME_ZONE_LENGTH) throw invalid(`${field}.time_zone is too long: at most ${MAX_TIME_ZONE_LENGTH} characters`);
  if (spec.timeZone !== "" && !isTimeZone(spec.timeZone)) {
    throw invalid(`${field}.time_zone "${spec.timeZone}" is not a known IANA time zone; use a name like "Europe/Berlin" or "America/New_York", or leave it empty for UTC`);
  }
  spec.cron.forEach((expression, i) => cronOf(expression, spec.timeZone, `${field}.cron_expressions[${i}]`));
  spec.intervals.forEach((interval, i) => {
    const name = `${field}.intervals[${i}]`;
    if (!Number.isInteger(interval.everyMs) || interval.everyMs < MIN_INTERVAL_MS || interval.everyMs > MAX_INTERVAL_MS) {
      throw invalid(`${name}.every must be whole milliseconds from 1s to 3650 days, got ${interval.everyMs} ms`);
    }
    if (!Number.isInteger(interval.offsetMs) || interval.offsetMs < 0 || interval.offsetMs >= interval.everyMs) {
      throw invalid(`${name}.offset must be whole milliseconds from 0 up to (not including) every (${interval.everyMs} ms), got ${interval.offsetMs} ms`);
    }
  });
  if (spec.startMs !== null && spec.endMs !== null && spec.endMs <= spec.startMs) {
    throw invalid(`${field}.end_time must be after start_time`);
  }
  if (!Number.isInteger(spec.jitterMs) || spec.jitterMs < 0 || spec.jitterMs > MAX_JITTER_MS) {
    throw invalid(`${field}.jitter must be whole milliseconds from 0 to 1 day, got ${spec.jitterMs} ms`);
  }
  return spec;
}

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

function cronOf(expression: string, timeZone: string, field: string, from = 0): CronExpression {
  if (expression.length === 0 || expression.length > MAX_CRON_LENGTH) {
    throw invalid(`${field} must be 1 to ${MAX_CRON_LENGTH} characters`);
  }
  const fields = expression.trim().split(/\s+/);
  const macro = fields.length === 1 && MACROS.has(fields[0]!.toLowerCase());
  if (!macro && fields.length !== 5 && fields.length !== 6) {
    throw invalid(
      `${field} "${expression}" has ${fields.length} fields; use 5 (minute hour day-of-month month day-of-week), ` +
        `6 (seconds first), or a macro like @hourly`,
    );
  }
  try {
    return CronExpressionParser.parse(expression, { tz: timeZone || "UTC", currentDate: new Date(from), strict: false });
  } catch (err) {
    throw invalid(`${field} "${expression}" is not a valid cron expression: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The spec ready to answer "what is the next nominal time after t". */
export class CompiledSpec {
  constructor(private readonly spec: ScheduleSpec) {}

  /** The first nominal time strictly after `afterMs` (and not before start), or null when there is none before end. */
  nextAfter(afterMs: number): number | null {
    const from = this.spec.startMs !== null && this.spec.startMs - 1 > afterMs ? this.spec.startMs - 1 : afterMs;
    let best = Number.POSITIVE_INFINITY;
    for (const { everyMs, offsetMs } of this.spec.intervals) {
      const n = Math.floor((from - offsetMs) / everyMs) + 1;
      best = Math.min(best, n * everyMs + offsetMs);
    }
    for (const expression of this.spec.cron) {
      const next = nextCron(expression, this.spec.timeZone, from);
      if (next !== null) best = Math.min(best, next);
    }
    if (!Number.isFinite(best)) return null;
    if (this.spec.endMs !== null && best > this.spec.endMs) return null;
    return best;
  }

  /** Up to `limit` nominal times in [fromMs, toMs], in order. */
  between(fromMs: number, toMs: number, limit: number): number[] {
    const times: number[] = [];
    let at = this.nextAfter(fromMs - 1);
    while (at !== null && at <= toMs && times.length < limit) {
      times.push(at);
      at = this.nextAfter(at);
    }
    return times;
  }
}

function nextCron(expression: string, timeZone: string, afterMs: number): number | null {
  try {
    const cron = CronExpressionParser.parse(expression, { tz: timeZone || "UTC", currentDate: new Date(afterMs) });
    if (!cron.hasNext()) return null;
    const next = cron.next().getTime();
    return next > afterMs ? next : null;
  } catch {
    // Validated on create; a date past the library's range has no next time.
    return null;
  }
}

/**
 * The firing's delay after its nominal time: a hash of the schedule id and
 * the nominal time, so every server and every retry computes the same delay
 * (a firing is due at the same time wherever it is looked at).
 */
export function jitterOf(scheduleId: string, nominalMs: number, jitterMs: number): number {
  if (jitterMs <= 0) return 0;
  const digest = createHash("sha256").update(`${scheduleId}\u0000${nominalMs}`).digest();
  return Math.floor((digest.readUInt32BE(0) / 0x1_0000_0000) * jitterMs);
}

/** The instance id of the run a firing starts: the schedule id and the nominal time. */
export function scheduledInstanceId(scheduleId: string, nominalMs: number): string {
  return `${scheduleId}-${new Date(nominalMs).toISOString()}`;
}

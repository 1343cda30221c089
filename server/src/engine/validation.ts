/**
 * Input checks shared by the API handlers and the command validator. Each
 * throws INVALID_ARGUMENT with a message that names the field and says what
 * is allowed, so a caller can fix the request without reading server code.
 * The limits themselves live in limits.ts.
 */
import { toBinary } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { DexError, FailureKind, FailureSchema, TimeoutType, type Failure, type Payload } from "@dex/proto";
import {
  formatBytes,
  MAX_FAILURE_DEPTH,
  MAX_ID_LENGTH,
  MAX_LABEL_KEY_LENGTH,
  MAX_LABEL_VALUE_LENGTH,
  MAX_LABELS,
  type Limits,
} from "./limits.js";
import { MAX_DURATION_MS, QUEUE_NAME_PATTERN } from "./model.js";

export function invalid(message: string): DexError {
  return new DexError("INVALID_ARGUMENT", message);
}

/**
 * C0 and C1 control characters (NUL, newline, escape, ...). Ids and names
 * show up in logs, CLI tables and URLs, where a newline or an escape sequence
 * would forge or hide output; free text (reasons, status) may hold them.
 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** A required id or name: 1 to `max` characters, no control characters. */
export function requireString(field: string, value: string, max = MAX_ID_LENGTH): string {
  if (value.length === 0) throw invalid(`${field} is required`);
  return optionalString(field, value, max);
}

/** An optional id or name (empty means unset): at most `max` characters, no control characters. */
export function optionalString(field: string, value: string, max = MAX_ID_LENGTH): string {
  optionalText(field, value, max);
  const control = CONTROL.exec(value);
  if (control) {
    const code = control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
    throw invalid(`${field} must not contain control characters: it has U+${code} at position ${codePoints(value.slice(0, control.index))}`);
  }
  return value;
}

/** Free text (a reason, a custom status): at most `max` characters and no NUL, which Postgres text cannot hold. */
export function optionalText(field: string, value: string, max: number): string {
  // Counted only when the UTF-16 length is over: a string never has more code points than units.
  if (value.length > max) {
    const characters = codePoints(value);
    if (characters > max) throw invalid(`${field} is too long: ${characters} characters, at most ${max}`);
  }
  return noNul(field, value);
}

/**
 * Characters as the proto comments count them ("1 to 255 characters"):
 * Unicode code points, the same in every language, not JavaScript's UTF-16
 * units, in which an emoji counts two and a limit would depend on the
 * server's language. An unpaired surrogate counts one.
 */
export function codePoints(value: string): number {
  let surrogatePairs = 0;
  for (let i = 0; i < value.length - 1; i++) {
    const unit = value.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        surrogatePairs++;
        i++;
      }
    }
  }
  return value.length - surrogatePairs;
}

/** No NUL: Postgres text cannot hold it, and logs and terminals cut the text at it. */
function noNul(field: string, value: string): string {
  if (value.includes("\u0000")) throw invalid(`${field} must not contain NUL characters`);
  return value;
}

export function queueName(field: string, value: string, fallback?: string): string {
  const name = value === "" && fallback !== undefined ? fallback : value;
  if (name === "") throw invalid(`${field} is required`);
  if (!QUEUE_NAME_PATTERN.test(name)) {
    throw invalid(`${field} ${quote(name)} is not a valid task queue name: use 1 to 64 letters, digits, '-', '_' or '.'`);
  }
  return name;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function uuid(field: string, value: string): string {
  if (value === "") throw invalid(`${field} is required`);
  if (!UUID_PATTERN.test(value)) throw invalid(`${field} ${quote(value)} is not a run id (a UUID such as 0190a1b2-...)`);
  return value.toLowerCase();
}

export function intInRange(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${field} must be an integer from ${min} to ${max}, got ${value}`);
  }
  return value;
}

/** A duration in ms; undefined when unset. Negative, malformed or absurd durations are rejected. */
export function durationField(
  field: string,
  value: Duration | undefined,
  options: { allowZero?: boolean; maxMs?: number } = {},
): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value.seconds);
  if (seconds < 0 || value.nanos < 0 || value.nanos >= 1e9) {
    throw invalid(`${field} must be a non-negative duration`);
  }
  const ms = durationMs(value);
  const max = options.maxMs ?? MAX_DURATION_MS;
  if (ms > max) throw invalid(`${field} is too long: at most ${Math.round(max / 1000)} s`);
  if (ms === 0 && !options.allowZero) return undefined;
  return ms;
}

/**
 * google.protobuf.Timestamp's own range, years 1 to 9999. Postgres and
 * JavaScript both reach further, but not equally far: a date past one of
 * them failed deep in the database instead of here.
 */
const MIN_TIMESTAMP_S = -62_135_596_800;
const MAX_TIMESTAMP_S = 253_402_300_799;

export function timestampField(field: string, value: Timestamp | undefined): Date | undefined {
  if (!value) return undefined;
  const seconds = Number(value.seconds);
  if (value.nanos < 0 || value.nanos >= 1e9 || !(seconds >= MIN_TIMESTAMP_S && seconds <= MAX_TIMESTAMP_S)) {
    throw invalid(`${field} is not a valid timestamp: seconds must lie from 0001-01-01 to 9999-12-31 and nanos from 0 to 999999999`);
  }
  return new Date(seconds * 1000 + Math.floor(value.nanos / 1e6));
}

/** An enum field must hold one of the values this server knows. */
export function enumField<T extends number>(field: string, value: number, known: readonly T[]): T {
  if (!known.includes(value as T)) throw invalid(`${field} has an unknown value ${value}`);
  return value as T;
}

/** Labels: at most 64; keys are ids of up to 64 characters, values text of up to 255. */
export function labelsField(field: string, labels: Record<string, string>): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS) throw invalid(`${field} has ${entries.length} labels, at most ${MAX_LABELS}`);
  for (const [key, value] of entries) {
    if (key.length === 0) throw invalid(`${field} has an empty key`);
    optionalString(`${field} key ${quote(key)}`, key, MAX_LABEL_KEY_LENGTH);
    optionalText(`${field}[${quote(key)}]`, value, MAX_LABEL_VALUE_LENGTH);
  }
  return { ...labels };
}

/** Bytes a payload occupies: data, encoding and metadata (UTF-8). */
export function payloadSize(payload: Payload): number {
  let size = payload.data.byteLength + Buffer.byteLength(payload.encoding, "utf8");
  for (const [key, value] of Object.entries(payload.metadata)) size += Buffer.byteLength(key, "utf8") + Buffer.byteLength(value, "utf8");
  return size;
}

/** A payload within limits.maxPayloadBytes (unset is fine). */
export function payloadField(field: string, payload: Payload | undefined, limits: Limits): Payload | undefined {
  if (!payload) return payload;
  const size = payloadSize(payload);
  if (size > limits.maxPayloadBytes) {
    throw invalid(
      `${field} is ${size} bytes, more than the limit of ${limits.maxPayloadBytes} bytes (${formatBytes(limits.maxPayloadBytes)}) per payload; ` +
        `keep large data elsewhere (a blob store, a table) and pass a reference`,
    );
  }
  return payload;
}

const KINDS = Object.values(FailureKind).filter((v): v is number => typeof v === "number");
const TIMEOUT_TYPES = Object.values(TimeoutType).filter((v): v is number => typeof v === "number");

/**
 * A failure as a caller sends it: a cause chain at most MAX_FAILURE_DEPTH
 * deep, no NUL in any message or type (they become the text of errors,
 * logs and CLI lines, like every other string), known kinds, each level's details within the payload limit, and the
 * whole chain serialized within it too (message and stack count).
 */
export function failureField(field: string, failure: Failure | undefined, limits: Limits): Failure | undefined {
  if (!failure) return failure;
  let level: Failure | undefined = failure;
  for (let depth = 0; level; depth++, level = level.cause) {
    const at = `${field}${".cause".repeat(depth)}`;
    if (depth >= MAX_FAILURE_DEPTH) throw invalid(`${field} has a cause chain more than ${MAX_FAILURE_DEPTH} failures deep; cut it shorter`);
    noNul(`${at}.message`, level.message);
    noNul(`${at}.type`, level.type);
    enumField(`${at}.kind`, level.kind, KINDS);
    enumField(`${at}.timeout_type`, level.timeoutType, TIMEOUT_TYPES);
    payloadField(`${at}.details`, level.details, limits);
  }
  const size = toBinary(FailureSchema, failure).byteLength;
  if (size > limits.maxPayloadBytes) {
    throw invalid(
      `${field} is ${size} bytes serialized (message, stack, details and causes together), more than the limit of ` +
        `${limits.maxPayloadBytes} bytes (${formatBytes(limits.maxPayloadBytes)}); shorten the message or stack, or move data out of the details`,
    );
  }
  return failure;
}

/** A `failure` field that must be set (FailActivityTask, FailWorkflowTask), checked as failureField. */
export function requireFailure(failure: Failure | undefined, limits: Limits): Failure {
  if (!failure) throw invalid("failure is required: say what went wrong (at least failure.message)");
  return failureField("failure", failure, limits)!;
}

/** A caller's value inside a message: cut short, quoted, control characters escaped. */
export function quote(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
}

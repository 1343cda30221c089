/**
 * Input checks shared by the API handlers and the command validator. Each
 * throws INVALID_ARGUMENT with a message that names the field and says what
 * is allowed, so a caller can fix the request without reading server code.
 */
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { DexError } from "@dex/proto";
import { MAX_DURATION_MS, MAX_NAME_LENGTH, QUEUE_NAME_PATTERN } from "./model.js";

export function invalid(message: string): DexError {
  return new DexError("INVALID_ARGUMENT", message);
}

export function requireString(field: string, value: string, max = MAX_NAME_LENGTH): string {
  if (value.length === 0) throw invalid(`${field} is required`);
  return optionalString(field, value, max);
}

export function optionalString(field: string, value: string, max = MAX_NAME_LENGTH): string {
  if (value.length > max) throw invalid(`${field} is too long: ${value.length} characters, at most ${max}`);
  if (value.includes("\u0000")) throw invalid(`${field} must not contain NUL characters`);
  return value;
}

export function queueName(field: string, value: string, fallback?: string): string {
  const name = value === "" && fallback !== undefined ? fallback : value;
  if (name === "") throw invalid(`${field} is required`);
  if (!QUEUE_NAME_PATTERN.test(name)) {
    throw invalid(`${field} "${truncate(name)}" is not a valid task queue name: use 1 to 64 letters, digits, '-', '_' or '.'`);
  }
  return name;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function uuid(field: string, value: string): string {
  if (value === "") throw invalid(`${field} is required`);
  if (!UUID_PATTERN.test(value)) throw invalid(`${field} "${truncate(value)}" is not a run id (a UUID such as 0190a1b2-...)`);
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

export function timestampField(field: string, value: Timestamp | undefined): Date | undefined {
  if (!value) return undefined;
  const ms = Number(value.seconds) * 1000 + Math.floor(value.nanos / 1e6);
  if (!Number.isFinite(ms) || value.nanos < 0 || value.nanos >= 1e9 || Math.abs(ms) > 8.64e15) {
    throw invalid(`${field} is not a valid timestamp`);
  }
  return new Date(ms);
}

/** An enum field must hold one of the values this server knows. */
export function enumField<T extends number>(field: string, value: number, known: readonly T[]): T {
  if (!known.includes(value as T)) throw invalid(`${field} has an unknown value ${value}`);
  return value as T;
}

export function labelsField(field: string, labels: Record<string, string>): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > 64) throw invalid(`${field} has ${entries.length} labels, at most 64`);
  for (const [key, value] of entries) {
    if (key.length === 0) throw invalid(`${field} has an empty key`);
    optionalString(`${field} key "${truncate(key)}"`, key, 64);
    optionalString(`${field}["${truncate(key)}"]`, value, 255);
  }
  return { ...labels };
}

function truncate(value: string): string {
  return value.length > 40 ? `${value.slice(0, 40)}…` : value;
}

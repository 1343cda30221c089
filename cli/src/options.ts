/** Parsing of flag values shared by several commands. Every failure is a UsageError. */
import { UsageError } from "./errors.js";

export function parseJsonFlag(flag: string, text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${flag} is not valid JSON (${(err as Error).message}): ${text}`);
  }
}

export function parseIntFlag(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, got "${text}"`);
  }
  return value;
}

/** Commander collector for repeatable `--label k=v`. */
export function collectLabel(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new UsageError(`--label must look like key=value, got "${value}"`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A positional run reference: a UUID is a run id, anything else an instance id. */
export function runRef(ref: string): { runId: string } | { instanceId: string } {
  if (!ref.trim()) throw new UsageError("a run id or instance id is required");
  return UUID.test(ref) ? { runId: ref.toLowerCase() } : { instanceId: ref };
}

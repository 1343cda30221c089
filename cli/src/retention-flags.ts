/**
 * Retention durations on the command line: `0` (keep forever) or a whole
 * number with a unit, `30d`, `12h`, `90m`, `45s` (or several: `1d12h`). The
 * server checks the same limits (0, or 1 s to 3650 days); checking here too
 * gives the user one clear line before any connection is made.
 */
import type { Command } from "commander";
import { UsageError } from "./errors.js";

/** 3650 days: the server's limit (MAX_RETENTION_SECONDS in @dex/server). */
const MAX_SECONDS = 3650 * 86_400;
const UNIT_SECONDS: Record<string, number> = { d: 86_400, h: 3_600, m: 60, s: 1 };

export function parseRetention(flag: string, text: string): number {
  const trimmed = text.trim();
  if (trimmed === "0") return 0;
  const parts = [...trimmed.matchAll(/(\d+)([dhms])/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== trimmed) {
    throw new UsageError(`${flag} must be 0 (keep forever) or a duration such as 30d, 12h, 90m or 45s, got "${text}"`);
  }
  const seconds = parts.reduce((sum, p) => sum + Number(p[1]) * UNIT_SECONDS[p[2]!]!, 0);
  if (seconds > MAX_SECONDS) throw new UsageError(`${flag} must be at most 3650d (use 0 to keep forever), got "${text}"`);
  return seconds;
}

/** A retention in seconds as people write it: 0 -> "forever", 2592000 -> "30d", 5400 -> "1h30m". */
export function formatRetention(seconds: number): string {
  if (seconds === 0) return "forever";
  let left = seconds;
  let text = "";
  for (const [unit, size] of Object.entries(UNIT_SECONDS)) {
    const n = Math.floor(left / size);
    if (n > 0) text += `${n}${unit}`;
    left -= n * size;
  }
  return text;
}

const DEFAULT_RETENTION_HELP =
  "how long ended runs are kept on workflow queues that set no retention of their own, e.g. 30d; 0 keeps them forever (default: $DEX_DEFAULT_RETENTION or 0)";

/** Adds --default-retention to `dex server` and `dex dev`. */
export function withDefaultRetentionFlag(command: Command): Command {
  return command.option("--default-retention <duration>", DEFAULT_RETENTION_HELP);
}

/** --default-retention, else DEX_DEFAULT_RETENTION, else undefined (the server's default: keep forever). */
export function defaultRetention(flag: string | undefined): number | undefined {
  if (flag !== undefined) return parseRetention("--default-retention", flag);
  const env = process.env.DEX_DEFAULT_RETENTION || undefined;
  return env === undefined ? undefined : parseRetention("DEX_DEFAULT_RETENTION", env);
}

/** DEX_RETENTION_SWEEP_INTERVAL (e.g. 30s; no flag: operators rarely need it, tests and the chaos suite do). */
export function retentionSweepIntervalMs(): number | undefined {
  const env = process.env.DEX_RETENTION_SWEEP_INTERVAL || undefined;
  if (env === undefined) return undefined;
  const seconds = parseRetention("DEX_RETENTION_SWEEP_INTERVAL", env);
  if (seconds === 0) throw new UsageError(`DEX_RETENTION_SWEEP_INTERVAL must be at least 1s, got "${env}"`);
  return seconds * 1000;
}

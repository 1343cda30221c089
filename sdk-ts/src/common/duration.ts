import { durationFromMs, type Duration as ProtoDuration } from "@bufbuild/protobuf/wkt";

/** A duration: milliseconds as a number, or a string like "250ms", "10s", "5m", "2h", "1d", "1.5s". */
export type Duration = number | string;

const unitMs: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const pattern = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/;

/** Parses a duration into milliseconds; throws a TypeError naming the accepted forms. */
export function parseDuration(value: Duration): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) throw new TypeError(`invalid duration ${value}: expected milliseconds >= 0`);
    return value;
  }
  const match = pattern.exec(value);
  if (!match) throw new TypeError(`invalid duration "${value}": use milliseconds or a string like "500ms", "10s", "5m", "2h", "1d"`);
  return Math.round(Number(match[1]) * unitMs[match[2] ?? "ms"]!);
}

export function toProtoDuration(value: Duration | undefined): ProtoDuration | undefined {
  return value === undefined ? undefined : durationFromMs(parseDuration(value));
}

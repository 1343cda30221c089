/**
 * What one request may carry and how large one run may grow, in one place
 * (docs/worker-protocol.md, "Limits"). Two limits are server options
 * (ServerOptions.limits, `dex server --max-payload-bytes`); the others are
 * part of the contract (the proto comments say "1 to 255 characters") or of
 * the schema, so they are constants that clients can rely on. Lengths in
 * characters count Unicode code points (validation.ts codePoints), as the
 * proto comments do, so a limit means the same in every client's language.
 */

export interface Limits {
  /**
   * Largest Payload accepted (data, encoding and metadata together), and
   * largest Failure (its whole cause chain, serialized): every input, result,
   * event payload, heartbeat detail, side-effect value and failure a request
   * or command carries. Default 2 MiB.
   */
  maxPayloadBytes: number;
  /**
   * Most events a run's history may hold. A workflow task completion that
   * would take the history past it is refused (FAILED_PRECONDITION) unless it
   * ends the run (complete, fail, cancel, continue-as-new), so a run at the
   * limit can always end. Default 50 000.
   */
  maxHistoryEvents: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxPayloadBytes: 2 * 1024 * 1024,
  maxHistoryEvents: 50_000,
});

/**
 * Ceiling for maxPayloadBytes. A payload must also fit in a request message
 * (ServerOptions.maxMessageBytes, default 16 MiB), and every payload is
 * stored in a bytea column and read back whole: far below Postgres's 1 GB.
 */
const MAX_PAYLOAD_BYTES_CEILING = 256 * 1024 * 1024;

/**
 * history_length is an integer column, and a terminal completion may still
 * add up to MAX_COMMANDS_PER_TASK events (plus its inputs) past the limit.
 */
const MAX_HISTORY_EVENTS_CEILING = 1_000_000_000;

/** Ids and names (instance id, workflow, activity and event ids, request ids, ...). */
export const MAX_ID_LENGTH = 255;
/** Labels per run, and the length of a key and of a value (characters). */
export const MAX_LABELS = 64;
export const MAX_LABEL_KEY_LENGTH = 64;
export const MAX_LABEL_VALUE_LENGTH = 255;
/** A run's custom status (characters). */
export const MAX_CUSTOM_STATUS_LENGTH = 255;
/** A cancellation or termination reason (characters). */
export const MAX_REASON_LENGTH = 1_000;
/**
 * Failures nested through `cause`. The SDK cuts its chains at about 20; the
 * server wraps a few more levels around them (activity, child run), and the
 * decoder refuses messages nested 100 deep, so 32 leaves room on both sides.
 */
export const MAX_FAILURE_DEPTH = 32;

/** The server's limits: the defaults with `overrides` applied, each checked. */
export function resolveLimits(overrides: Partial<Limits> = {}): Limits {
  const limits = { ...DEFAULT_LIMITS, ...withoutUndefined(overrides) };
  checkLimit("maxPayloadBytes", limits.maxPayloadBytes, 1_024, MAX_PAYLOAD_BYTES_CEILING);
  checkLimit("maxHistoryEvents", limits.maxHistoryEvents, 10, MAX_HISTORY_EVENTS_CEILING);
  return limits;
}

function checkLimit(name: keyof Limits, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`limits.${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

function withoutUndefined(overrides: Partial<Limits>): Partial<Limits> {
  return Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) as Partial<Limits>;
}

/** "2 MiB", "512 KiB", "1000 bytes": limits in messages, readable at a glance. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

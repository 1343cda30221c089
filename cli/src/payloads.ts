/**
 * JSON views of protocol values for the CLI: payloads decoded by their
 * encoding, failures flattened, timestamps as ISO strings.
 */
import { durationMs, timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { type Failure, FailureKind, type Payload, RunStatus } from "@dex/proto";
import { decodePayload as decodeWithSdk } from "@dex/sdk";
import { UsageError } from "./errors.js";

export { encodePayload as encodeJsonPayload } from "@dex/sdk";

/**
 * What the CLI shows of a payload: the SDK's decoding, with bytes (and
 * encodings the SDK does not read) shown as base64 instead of failing.
 */
export function decodePayload(payload: Payload | undefined): unknown {
  try {
    const value = decodeWithSdk(payload);
    return value instanceof Uint8Array ? { encoding: "binary/plain", base64: Buffer.from(value).toString("base64") } : value;
  } catch {
    return { encoding: payload?.encoding, base64: Buffer.from(payload?.data ?? []).toString("base64") };
  }
}

export interface FailureView {
  message: string;
  type?: string;
  kind?: string;
  nonRetryable?: boolean;
  stack?: string;
  cause?: FailureView;
}

export function failureView(failure: Failure | undefined): FailureView | undefined {
  if (!failure) return undefined;
  const view: FailureView = { message: failure.message };
  if (failure.type) view.type = failure.type;
  if (failure.kind) view.kind = kindName(failure.kind);
  if (failure.nonRetryable) view.nonRetryable = true;
  if (failure.stack) view.stack = failure.stack;
  const cause = failureView(failure.cause);
  if (cause) view.cause = cause;
  return view;
}

function kindName(kind: FailureKind): string {
  return FailureKind[kind] ?? String(kind);
}

/** One line for a failure and its causes: "charge failed: card declined (CardDeclined)". */
export function failureLine(failure: FailureView | undefined): string | undefined {
  if (!failure) return undefined;
  const parts: string[] = [];
  for (let f: FailureView | undefined = failure; f; f = f.cause) {
    parts.push(f.type ? `${f.message} (${f.type})` : f.message);
  }
  return parts.join(": caused by: ");
}

export function statusName(status: RunStatus): string {
  return RunStatus[status] ?? String(status);
}

export function parseStatus(text: string): RunStatus {
  const key = text.trim().toUpperCase() as keyof typeof RunStatus;
  const value = RunStatus[key];
  if (typeof value !== "number" || value === RunStatus.UNSPECIFIED) {
    const names = Object.keys(RunStatus)
      .filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED")
      .map((k) => k.toLowerCase());
    throw new UsageError(`unknown status "${text}": use one of ${names.join(", ")}`);
  }
  return value;
}

export function isoTime(timestamp: Timestamp | undefined): string | undefined {
  return timestamp ? timestampDate(timestamp).toISOString() : undefined;
}


/** "1h", "90s", "1500ms": the largest unit that shows the duration exactly. */
export function formatDuration(duration: Duration | undefined): string | undefined {
  if (!duration) return undefined;
  const ms = durationMs(duration);
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1_000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

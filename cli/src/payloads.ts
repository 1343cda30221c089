/**
 * JSON views of protocol values for the CLI: payloads decoded by their
 * encoding, failures flattened, timestamps as ISO strings.
 */
import { create, toJson } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { type Failure, FailureKind, type Payload, PayloadSchema, RunStatus } from "@dex/proto";
import { UsageError } from "./errors.js";

export function encodeJsonPayload(value: unknown): Payload {
  if (value === undefined) return create(PayloadSchema, { encoding: "binary/null" });
  return create(PayloadSchema, { encoding: "json/plain", data: new TextEncoder().encode(JSON.stringify(value)) });
}

/** Decodes what the CLI can show: JSON as a value, binary as base64, null as undefined. */
export function decodePayload(payload: Payload | undefined): unknown {
  if (!payload || payload.encoding === "binary/null") return undefined;
  if (payload.encoding === "json/plain") {
    const text = new TextDecoder().decode(payload.data);
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return { encoding: payload.encoding || "binary/plain", base64: Buffer.from(payload.data).toString("base64") };
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

export { toJson };

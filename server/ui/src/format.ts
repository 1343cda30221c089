/** Display helpers: payloads, times, statuses. */
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Payload } from "../../../proto/src/gen/dex/v1/common_pb.js";
import { RunStatus } from "../../../proto/src/gen/dex/v1/common_pb.js";

const decoder = new TextDecoder();

/** A payload as text: JSON pretty-printed, other encodings described. */
export function payloadText(payload: Payload | undefined): string {
  if (!payload) return "(none)";
  const encoding = payload.encoding || "binary/plain";
  if (encoding === "binary/null") return "null";
  if (encoding.startsWith("json")) {
    const text = decoder.decode(payload.data);
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return text;
    }
  }
  return `(${payload.data.byteLength} bytes, ${encoding})`;
}

export function statusName(status: RunStatus): string {
  return (RunStatus[status] ?? "UNKNOWN").toString();
}

export function time(ts: Timestamp | undefined): string {
  return ts ? timestampDate(ts).toISOString().replace("T", " ").replace("Z", "") : "";
}

export function millis(ts: Timestamp | undefined): number | undefined {
  return ts ? timestampDate(ts).getTime() : undefined;
}

/** "activityScheduled" -> "activity scheduled". */
export function eventKind(kind: string | undefined): string {
  return (kind ?? "unknown").replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`);
}

/** A message's fields as JSON for the expandable history table (bigints and bytes made readable). */
export function fieldsText(value: unknown): string {
  return JSON.stringify(
    value,
    (key, v: unknown) => {
      if (key === "$typeName") return undefined;
      if (typeof v === "bigint") return v.toString();
      if (v instanceof Uint8Array) return decoder.decode(v);
      return v;
    },
    2,
  );
}

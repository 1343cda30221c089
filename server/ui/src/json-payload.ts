/** A JSON text typed in a form, as the Payload the API takes ("json/plain", as the SDKs encode). */
import { create } from "@bufbuild/protobuf";
import { PayloadSchema, type Payload } from "../../../proto/src/gen/dex/v1/common_pb.js";

const encoder = new TextEncoder();

/** `text` as a JSON payload (empty: JSON null), or what to fix. */
export function jsonPayload(what: string, text: string): { payload: Payload } | { problem: string } {
  let value: unknown = null;
  if (text.trim() !== "") {
    try {
      value = JSON.parse(text);
    } catch (err) {
      return { problem: `${what} must be JSON, e.g. {"sku":"a1"} or "text" (or empty for null): ${(err as Error).message}` };
    }
  }
  return { payload: create(PayloadSchema, { data: encoder.encode(JSON.stringify(value)), encoding: "json/plain" }) };
}

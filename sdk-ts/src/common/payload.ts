/**
 * The default payload converter. Values travel as UTF-8 JSON (`json/plain`);
 * `undefined` travels as `binary/null` so it survives a round trip distinct
 * from `null`; byte arrays travel as `binary/plain` instead of a JSON object.
 */
import { create } from "@bufbuild/protobuf";
import { PayloadSchema, type Payload } from "@dex/proto";

export const Encoding = {
  JSON: "json/plain",
  NULL: "binary/null",
  BINARY: "binary/plain",
} as const;

/** Thrown when a value cannot be encoded or a payload cannot be decoded. */
export class PayloadError extends Error {
  override readonly name = "PayloadError";
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

export function encodePayload(value: unknown): Payload {
  if (value === undefined) return create(PayloadSchema, { encoding: Encoding.NULL });
  if (value instanceof Uint8Array) return create(PayloadSchema, { encoding: Encoding.BINARY, data: value });
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new PayloadError(`cannot encode value as JSON: ${(err as Error).message}`, { cause: err });
  }
  // JSON.stringify answers undefined for functions and symbols.
  if (json === undefined) throw new PayloadError(`cannot encode a value of type ${typeof value} as JSON`);
  return create(PayloadSchema, { encoding: Encoding.JSON, data: utf8Encoder.encode(json) });
}

/** Decodes a payload; a missing payload decodes to undefined. */
export function decodePayload(payload: Payload | undefined): unknown {
  if (payload === undefined) return undefined;
  switch (payload.encoding) {
    case Encoding.NULL:
      return undefined;
    case Encoding.JSON: {
      try {
        return JSON.parse(utf8Decoder.decode(payload.data));
      } catch (err) {
        throw new PayloadError(`cannot decode json/plain payload: ${(err as Error).message}`, { cause: err });
      }
    }
    case "":
    case Encoding.BINARY:
      return payload.data;
    default:
      throw new PayloadError(
        `unsupported payload encoding "${payload.encoding}": this SDK reads json/plain, binary/plain and binary/null`,
      );
  }
}

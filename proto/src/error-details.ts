/**
 * Typed error details on the wire: a dex.v1.RpcStatus (google.rpc.Status's
 * field numbers) in the standard `grpc-status-details-bin` trailer, holding
 * one packed dex.v1.ErrorDetails. That trailer and that shape are what the
 * gRPC libraries' rich-error helpers read (grpcio-status's from_call, Go's
 * status.Details, Java's StatusProto), so a client in another language needs
 * nothing but the .proto files; see docs/decisions/0025-error-details.md.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack, anyUnpack } from "@bufbuild/protobuf/wkt";
import { FailureSchema } from "./gen/dex/v1/common_pb.js";
import { ErrorDetailsSchema, RpcStatusSchema, type ErrorDetails } from "./gen/dex/v1/errors_pb.js";

/** The trailer that carries a binary google.rpc.Status (gRPC's own convention). */
export const STATUS_DETAILS_TRAILER = "grpc-status-details-bin";

/**
 * The most the trailer may take. gRPC C core (grpcio, and so the Python,
 * Ruby and C++ clients) refuses a response whose metadata exceeds 8 KiB by
 * default, failing the call with its own error instead of ours; the status
 * repeats the message, so half of that is left for the rest.
 */
export const MAX_STATUS_DETAILS_BYTES = 4096;

export type ErrorDetailsInit = MessageInitShape<typeof ErrorDetailsSchema>;

function encode(code: number, message: string, details: ErrorDetails): Uint8Array {
  return toBinary(RpcStatusSchema, create(RpcStatusSchema, { code, message, details: [anyPack(ErrorDetailsSchema, details)] }));
}

/**
 * The trailer's bytes for a refusal with details, or undefined when they do
 * not fit MAX_STATUS_DETAILS_BYTES even with the failure cut to its message
 * and type: the call then goes out with its code and message only.
 */
export function encodeStatusDetails(code: number, message: string, details: ErrorDetails): Uint8Array | undefined {
  const bytes = encode(code, message, details);
  if (bytes.byteLength <= MAX_STATUS_DETAILS_BYTES) return bytes;
  if (!details.failure) return undefined;
  // A validator's stack, details and causes are for logs; a program switches on the message and type.
  const { message: failureMessage, type, nonRetryable, kind, timeoutType } = details.failure;
  const failure = create(FailureSchema, { message: failureMessage, type, nonRetryable, kind, timeoutType });
  const cut = encode(code, message, create(ErrorDetailsSchema, { ...details, failure }));
  return cut.byteLength <= MAX_STATUS_DETAILS_BYTES ? cut : undefined;
}

/**
 * The ErrorDetails in a received trailer, or undefined when there are none.
 * Like grpcio-status, a status whose code differs from the call's is not
 * believed; bytes that do not decode are ignored rather than hiding the
 * call's own error behind a decoding one.
 */
export function decodeStatusDetails(code: number, bytes: Uint8Array): ErrorDetails | undefined {
  try {
    const status = fromBinary(RpcStatusSchema, bytes);
    if (status.code !== code) return undefined;
    for (const any of status.details) {
      const details = anyUnpack(any, ErrorDetailsSchema);
      if (details) return details;
    }
  } catch {
    // Not a status we can read: the code and message still say what happened.
  }
  return undefined;
}

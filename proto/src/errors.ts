import { create } from "@bufbuild/protobuf";
import { status as grpcStatus, type Metadata } from "@grpc/grpc-js";
import { RunStatus, type Failure } from "./gen/dex/v1/common_pb.js";
import { ErrorDetailsSchema, ErrorReason, type ErrorDetails } from "./gen/dex/v1/errors_pb.js";
import { decodeStatusDetails, STATUS_DETAILS_TRAILER, type ErrorDetailsInit } from "./error-details.js";

/** gRPC status codes by name (a const object, not an enum). */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const satisfies Record<keyof typeof grpcStatus, number>;

export type CodeName = keyof typeof Code;

const namesByNumber = new Map<number, CodeName>(
  (Object.entries(Code) as [CodeName, number][]).map(([name, value]) => [value, name]),
);

/** The name of a numeric gRPC status code ("NOT_FOUND"); UNKNOWN for anything else. */
export function codeName(code: number): CodeName {
  return namesByNumber.get(code) ?? "UNKNOWN";
}

/** An ErrorReason by name, as DexError.reason gives it ("RUN_ALREADY_OPEN", "RUN_ENDED", ...). */
export type ErrorReasonName = Exclude<keyof typeof ErrorReason, "UNSPECIFIED">;
/** A RunStatus by name ("COMPLETED", ...). */
export type RunStatusName = Exclude<keyof typeof RunStatus, "UNSPECIFIED">;

export interface DexErrorOptions {
  cause?: unknown;
  /** Typed details for programs (dex.v1.ErrorDetails); sent in the grpc-status-details-bin trailer. */
  details?: ErrorDetailsInit;
}

/**
 * The one error type that crosses dex's boundaries: it carries a gRPC status
 * code name, and a message written for the person who has to fix the problem.
 * Server handlers throw it; SDK clients rethrow every RPC error as one.
 * Where the code alone does not say enough, it also carries typed details
 * (docs/errors.md): `reason` to switch on, and the run it is about.
 */
export class DexError extends Error {
  override readonly name = "DexError";
  readonly code: CodeName;
  /** The details as the server sent them; undefined when it sent none. */
  readonly details: ErrorDetails | undefined;
  /** Why, for a program: "RUN_ALREADY_OPEN", "RUN_REUSE_REJECTED", "RUN_ENDED", "UPDATE_REJECTED"; undefined without details. */
  readonly reason: ErrorReasonName | undefined;
  /** The run the error is about: the open run (RUN_ALREADY_OPEN), the latest (RUN_REUSE_REJECTED), the ended one (RUN_ENDED). */
  readonly runId: string | undefined;
  /** That run's instance id, when known. */
  readonly instanceId: string | undefined;
  /** That run's status when the call was refused: how it ended, for RUN_ENDED and RUN_REUSE_REJECTED. */
  readonly runStatus: RunStatusName | undefined;
  /** A failure that explains the refusal: an update validator's (UPDATE_REJECTED). */
  readonly failure: Failure | undefined;
  /** The update the refusal is about (UPDATE_REJECTED). */
  readonly updateId: string | undefined;

  constructor(code: CodeName, message: string, options?: DexErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    const details = options?.details === undefined ? undefined : create(ErrorDetailsSchema, options.details);
    this.details = details;
    this.reason = details && details.reason !== ErrorReason.UNSPECIFIED ? (ErrorReason[details.reason] as ErrorReasonName | undefined) : undefined;
    this.runId = details?.runId || undefined;
    this.instanceId = details?.instanceId || undefined;
    this.runStatus = details && details.runStatus !== RunStatus.UNSPECIFIED ? (RunStatus[details.runStatus] as RunStatusName | undefined) : undefined;
    this.failure = details?.failure;
    this.updateId = details?.updateId || undefined;
  }

  /**
   * Normalises anything thrown into a DexError; unknown errors become INTERNAL or UNKNOWN.
   * A gRPC error's typed details are read from its grpc-status-details-bin trailer.
   */
  static from(err: unknown, fallback: CodeName = "UNKNOWN"): DexError {
    if (err instanceof DexError) return err;
    if (isServiceError(err)) {
      const details = receivedDetails(err);
      return new DexError(codeName(err.code), err.details || err.message, details ? { cause: err, details } : { cause: err });
    }
    if (err instanceof Error) return new DexError(fallback, err.message, { cause: err });
    return new DexError(fallback, String(err));
  }
}

function receivedDetails(err: ServiceErrorLike): ErrorDetails | undefined {
  const values = err.metadata?.get(STATUS_DETAILS_TRAILER) ?? [];
  const bytes = values[0];
  return bytes instanceof Uint8Array ? decodeStatusDetails(err.code, bytes) : undefined;
}

/** The shape of errors produced by @grpc/grpc-js clients. */
export interface ServiceErrorLike extends Error {
  code: number;
  details: string;
  /** The response's trailers (grpc-js sets them on errors). */
  metadata?: Metadata;
}

export function isServiceError(err: unknown): err is ServiceErrorLike {
  return (
    err instanceof Error &&
    typeof (err as Partial<ServiceErrorLike>).code === "number" &&
    typeof (err as Partial<ServiceErrorLike>).details === "string"
  );
}

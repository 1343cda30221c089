import { status as grpcStatus } from "@grpc/grpc-js";

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

/**
 * The one error type that crosses dex's boundaries: it carries a gRPC status
 * code name, and a message written for the person who has to fix the problem.
 * Server handlers throw it; SDK clients rethrow every RPC error as one.
 */
export class DexError extends Error {
  override readonly name = "DexError";
  readonly code: CodeName;

  constructor(code: CodeName, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  /** Normalises anything thrown into a DexError; unknown errors become INTERNAL or UNKNOWN. */
  static from(err: unknown, fallback: CodeName = "UNKNOWN"): DexError {
    if (err instanceof DexError) return err;
    if (isServiceError(err)) return new DexError(codeName(err.code), err.details || err.message, { cause: err });
    if (err instanceof Error) return new DexError(fallback, err.message, { cause: err });
    return new DexError(fallback, String(err));
  }
}

/** The shape of errors produced by @grpc/grpc-js clients. */
export interface ServiceErrorLike extends Error {
  code: number;
  details: string;
}

export function isServiceError(err: unknown): err is ServiceErrorLike {
  return (
    err instanceof Error &&
    typeof (err as Partial<ServiceErrorLike>).code === "number" &&
    typeof (err as Partial<ServiceErrorLike>).details === "string"
  );
}

/** Recognising Postgres errors without leaking driver types above the store. */

interface PgErrorLike {
  code?: unknown;
  constraint_name?: unknown;
  cause?: unknown;
}

/**
 * The driver's error under `err`, which may be the error itself or its
 * `cause` a few levels down: a wrapper that keeps the driver's error as its
 * cause must not turn a dropped connection into a bug (INTERNAL). (The admin
 * reads once went through drizzle, which wraps every query error this way.)
 */
function driverError(err: unknown): PgErrorLike | null {
  let current = err as PgErrorLike | null;
  for (let depth = 0; depth < 4 && current && typeof current === "object"; depth++) {
    if (typeof current.code === "string") return current;
    current = current.cause as PgErrorLike | null;
  }
  return null;
}

export function pgCode(err: unknown): string | undefined {
  return driverError(err)?.code as string | undefined;
}

/** A unique violation of the named constraint or index (SQLSTATE 23505). */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  if (pgCode(err) !== "23505") return false;
  return constraint === undefined || driverError(err)?.constraint_name === constraint;
}

/** Connection-level client errors from postgres.js and the OS. */
const CONNECTION_ERROR_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
]);

/**
 * True when the database is away or refusing work for now (not a bug in the
 * statement): the caller can retry later, so the API answers UNAVAILABLE.
 * Class 08 is connection exceptions; 57P0x are shutdowns and "starting up";
 * 53300 is too many connections; 40001/40P01 are serialization failures and
 * deadlocks, which a retry resolves.
 */
export function isTransientDatabaseError(err: unknown): boolean {
  const code = pgCode(err);
  if (code === undefined) return false;
  if (CONNECTION_ERROR_CODES.has(code)) return true;
  return code.startsWith("08") || /^57P0[1-4]$/.test(code) || code === "53300" || code === "40001" || code === "40P01";
}

/** A statement cancelled by statement_timeout or a cancel request (57014). */
export function isQueryCancelled(err: unknown): boolean {
  return pgCode(err) === "57014";
}

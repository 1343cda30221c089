import postgres from "postgres";
import { connectionWatchdog, type StalledConnection } from "./connection-watchdog.js";

export type Sql = postgres.Sql;
export type TransactionSql = postgres.TransactionSql;
/** Either the pool or a transaction: what store functions that run one statement accept. */
export type Queryable = postgres.ISql;

/** Uint8Array -> Buffer without copying (postgres.js sends Buffers as bytea). */
export function bytes(value: Uint8Array): Buffer;
export function bytes(value: Uint8Array | null | undefined): Buffer | null;
export function bytes(value: Uint8Array | null | undefined): Buffer | null {
  if (!value) return null;
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * bytea arrays for unnest(): postgres.js cannot send an array of Buffers, so
 * multi-row writes send base64 text[] and decode it in SQL (decode(x, 'base64')).
 */
export function base64Array(values: ReadonlyArray<Uint8Array | null | undefined>): (string | null)[] {
  return values.map((value) => (value ? bytes(value).toString("base64") : null));
}

export interface DatabaseOptions {
  /** Postgres connection URL. */
  url: string;
  /** Pool size. Default 10. */
  maxConnections?: number;
  /** application_name, visible in pg_stat_activity. Default "dex". */
  applicationName?: string;
  /** statement_timeout of every statement. Default 30 000 ms; 0 turns it (and the watchdog) off. */
  statementTimeoutMs?: number;
  /**
   * A connection silent for statement_timeout plus this long while an answer is due is
   * destroyed (see connection-watchdog.ts). Default 5 000 ms.
   */
  stallMarginMs?: number;
  /**
   * synchronous_commit of every connection; default: the database's (on). "off" only for a pool
   * whose commits nothing durable depends on until a later synchronous commit flushes the WAL
   * past them (the dispatch pool: see server.ts).
   */
  synchronousCommit?: "off";
  /** Told about each connection the watchdog destroyed. */
  onStalledConnection?: (info: StalledConnection) => void;
}

/**
 * Opens a connection pool. Statements are prepared (postgres.js does so by
 * default, once per connection), notices are dropped, and every statement has
 * a timeout so that no transaction can hold back vacuum for long.
 */
export function openDatabase(options: DatabaseOptions): Sql {
  const statementTimeoutMs = options.statementTimeoutMs ?? 30_000;
  // A statement outlives statement_timeout only when the path to Postgres is dead (connection-watchdog.ts).
  const stallMs = statementTimeoutMs > 0 ? statementTimeoutMs + (options.stallMarginMs ?? 5_000) : undefined;
  const { url, socketPath } = unixSocketOf(options.url);
  return postgres(url, {
    ...(socketPath ? { path: socketPath } : {}),
    max: options.maxConnections ?? 10,
    onnotice: () => {},
    // Reconnect delay in seconds after failed connects. postgres.js's default grows as 3^n/100 s up
    // to 20 s, counted across the whole pool, so a few seconds of Postgres restart left the server
    // idle for up to 20 s after Postgres was back (chaos scenario postgres-restart): cap it at 1 s.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 1),
    // The watchdog leaves a connection's startup to connect_timeout (seconds): the same bound.
    ...(stallMs === undefined
      ? {}
      : // postgres.js supports `socket`, a function that returns the connection's socket; its types omit it.
        ({ socket: connectionWatchdog({ stallMs, onStall: options.onStalledConnection }), connect_timeout: stallMs / 1000 } as object)),
    connection: {
      application_name: options.applicationName ?? "dex",
      statement_timeout: statementTimeoutMs,
      idle_in_transaction_session_timeout: 60_000,
      ...(options.synchronousCommit ? { synchronous_commit: options.synchronousCommit } : {}),
    },
  });
}

/**
 * libpq's way to name a Unix socket, `postgres://user@localhost:5432/db?host=/var/run/postgresql`
 * (the directory as the `host` parameter, the port naming the socket file), which postgres.js
 * would otherwise send to Postgres as a connection parameter and fail on. A server on the same
 * host as Postgres saves the TCP stack on every round trip this way (docs/performance.md).
 */
export function unixSocketOf(url: string): { url: string; socketPath?: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { url }; // postgres.js reports an unparseable URL itself
  }
  const dir = parsed.searchParams.get("host");
  if (!dir?.startsWith("/")) return { url };
  parsed.searchParams.delete("host");
  const port = parsed.port || "5432";
  return { url: parsed.toString(), socketPath: `${dir.replace(/\/+$/, "")}/.s.PGSQL.${port}` };
}

/** The URL with its password hidden, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "<unparseable database URL>";
  }
}

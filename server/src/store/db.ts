import postgres from "postgres";

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
  /** statement_timeout of every statement. Default 30 000 ms. */
  statementTimeoutMs?: number;
}

/**
 * Opens a connection pool. Statements are prepared (postgres.js does so by
 * default, once per connection), notices are dropped, and every statement has
 * a timeout so that no transaction can hold back vacuum for long.
 */
export function openDatabase(options: DatabaseOptions): Sql {
  return postgres(options.url, {
    max: options.maxConnections ?? 10,
    onnotice: () => {},
    connection: {
      application_name: options.applicationName ?? "dex",
      statement_timeout: options.statementTimeoutMs ?? 30_000,
      idle_in_transaction_session_timeout: 60_000,
    },
  });
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

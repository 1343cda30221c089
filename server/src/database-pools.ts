/**
 * The server's connection pools, one per kind of work so that none queues behind another's
 * transactions (docs/performance.md), and the start-up check that the database answers and
 * carries a schema this server knows.
 */
import type { Logger } from "./logger.js";
import type { ServerOptions } from "./server-options.js";
import type { StalledConnection } from "./store/connection-watchdog.js";
import { openDatabase, redactUrl, type Sql } from "./store/db.js";
import { assertMigrated, type Migration } from "./store/migrator.js";
import { databaseClockOffsetMs, pingDatabase } from "./store/ping.js";

/** Connections of the poll path's pool unless ServerOptions.dispatchPoolSize says otherwise. */
const DEFAULT_DISPATCH_POOL_SIZE = 4;

/** statement_timeout of the scrape's queue read: a scrape must never become a long-running statement. */
const METRICS_STATEMENT_TIMEOUT_MS = 5_000;

export interface ServerPools {
  /** The main pool: polls (without a dispatch pool), completions, starts, admin calls. */
  readonly sql: Sql;
  /** The poll path's claims; undefined with dispatchPoolSize 0 (polls use `sql`). */
  readonly dispatchSql: Sql | undefined;
  /** The scrape's reads; undefined without metricsPort. */
  readonly metricsSql: Sql | undefined;
  /** The health probe's `select 1`. */
  readonly probeSql: Sql;
  /** The retention sweep's batches. */
  readonly retentionSql: Sql;
  /** Ends every pool, letting statements in flight finish for up to timeoutSeconds. */
  end(timeoutSeconds: number): Promise<void>;
}

/**
 * `applicationName` names each pool's connections: the pool, then this server's release and id
 * (store/connected-servers.ts), which `dex migrate` reads in pg_stat_activity (decision 0033).
 */
export function openServerPools(options: ServerOptions, logger: Logger, probeTimeoutMs: number, applicationName: (pool: string) => string): ServerPools {
  const database = {
    url: options.databaseUrl,
    statementTimeoutMs: options.statementTimeoutMs,
    stallMarginMs: options.stallMarginMs,
    onStalledConnection: (info: StalledConnection) =>
      logger.warn("database connection silent past statement_timeout with an answer due; replacing it", { ...info }),
  };
  const sql = openDatabase({ ...database, maxConnections: options.databasePoolSize, applicationName: applicationName("dex-server") });
  // The scrape's own connection, with a short statement timeout: a slow count
  // fails the queue gauges of one scrape instead of holding a snapshot open.
  const metricsSql =
    options.metricsPort === undefined
      ? undefined
      : openDatabase({
          ...database,
          maxConnections: 1,
          applicationName: applicationName("dex-server-metrics"),
          statementTimeoutMs: METRICS_STATEMENT_TIMEOUT_MS,
        });
  // Claims commit asynchronously: nothing depends on a claim being durable until the claimed
  // task's completion commits, and that synchronous commit flushes the WAL past the claim's
  // record. A claim lost in a crash only hands the task out again, fenced by a new lease.
  const dispatchPoolSize = options.dispatchPoolSize ?? DEFAULT_DISPATCH_POOL_SIZE;
  const dispatchSql =
    dispatchPoolSize === 0
      ? undefined
      : openDatabase({
          ...database,
          maxConnections: dispatchPoolSize,
          applicationName: applicationName("dex-server-dispatch"),
          synchronousCommit: "off",
        });
  // The health probe's own connection: on a shared pool it would queue behind busy transactions.
  const probeSql = openDatabase({
    ...database,
    maxConnections: 1,
    applicationName: applicationName("dex-server-health"),
    statementTimeoutMs: probeTimeoutMs,
    stallMarginMs: 1_000,
  });
  // The retention sweep's own connection: a batch (~0.1 s) never holds one of the call path's.
  const retentionSql = openDatabase({ ...database, maxConnections: 1, applicationName: applicationName("dex-server-retention") });
  const all = [sql, probeSql, retentionSql, ...(metricsSql ? [metricsSql] : []), ...(dispatchSql ? [dispatchSql] : [])];
  return {
    sql,
    dispatchSql,
    metricsSql,
    probeSql,
    retentionSql,
    end: async (timeoutSeconds) => {
      await Promise.all(all.map((pool) => pool.end({ timeout: timeoutSeconds })));
    },
  };
}

/** Fails the start, with what to check, when the database is unreachable or its schema is not one this server knows. */
export async function checkDatabase(sql: Sql, url: string, migrations: Migration[], logger: Logger): Promise<void> {
  try {
    await pingDatabase(sql);
  } catch (err) {
    throw new Error(
      `cannot reach the database at ${redactUrl(url)}: ${err instanceof Error ? err.message : String(err)}; ` +
        `check the URL and that Postgres is running`,
      { cause: err },
    );
  }
  warnOnClockSkew(await databaseClockOffsetMs(sql), logger);
  const schema = await assertMigrated(sql, migrations);
  if (schema.databaseReleaseLevel > schema.releaseLevel) {
    // Expected mid-upgrade; worth a line so that a fleet left half-upgraded is noticed.
    logger.info(`database schema is one release newer than this dex (release ${schema.databaseRelease}, this dex ${schema.release}: rolling upgrade; docs/upgrades.md)`, { ...schema });
  }
}

/** Beyond this, a run's id time and its created_at disagree enough to matter (store/run-id-time.ts allows 10 min). */
export const CLOCK_SKEW_WARNING_MS = 60_000;

/** Logs a warning when this server's clock and the database's differ by more than CLOCK_SKEW_WARNING_MS. */
export function warnOnClockSkew(offsetMs: number, logger: Logger): void {
  if (Math.abs(offsetMs) <= CLOCK_SKEW_WARNING_MS) return;
  logger.warn(
    `this server's clock is ${(Math.abs(offsetMs) / 1000).toFixed(0)} s ${offsetMs > 0 ? "behind" : "ahead of"} the database's: ` +
      `run ids carry this clock and created_at the database's, so runs can be missing from time-filtered listings ` +
      `near their edges beyond 10 minutes of difference; synchronise the clocks (NTP)`,
    { clockOffsetMs: Math.round(offsetMs) },
  );
}

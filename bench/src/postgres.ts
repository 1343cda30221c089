/**
 * The bench's own Postgres: the embedded binaries dex dev and the tests use,
 * fsync on and otherwise default settings, plus pg_stat_statements preloaded
 * so queries per second can be counted per database (it changes nothing about
 * how queries run; it counts them). One cluster, one database per system and
 * scenario.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import postgres from "postgres";
import { startEmbeddedPostgres, type RunningPostgres } from "@dex/server/dev/embedded-postgres";

export interface BenchPostgres {
  readonly url: string;
  urlFor(database: string): string;
  /** The postmaster's pid; its children are the backends. */
  postmasterPid(): number;
  /** "pg_stat_statements" when it loaded, else "pg_stat_database" (transactions only). */
  readonly queryCounter: "pg_stat_statements" | "pg_stat_database";
  /** A monitoring connection to the `postgres` database (never to a measured one). */
  readonly admin: postgres.Sql;
  createDatabase(name: string, template?: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  /** Counters of one database, for deltas over a window. */
  counters(database: string): Promise<QueryCounters>;
  /** The statements run most often on a database since it was created (pg_stat_statements), for the report's diagnostics. */
  topStatements(database: string, limit: number): Promise<Array<{ calls: number; meanMs: number; query: string }>>;
  stop(): Promise<void>;
}

export interface QueryCounters {
  at: number;
  /** Statements executed (pg_stat_statements calls), BEGIN/COMMIT/ROLLBACK and SET excluded; NaN without pg_stat_statements. */
  statements: number;
  /**
   * xact_commit + xact_rollback from pg_stat_database. Backends flush these
   * counters lazily (up to 10 s late when idle), so short windows misattribute
   * them: kept in the JSON for reference, not shown in the table.
   */
  transactions: number;
}

export async function startBenchPostgres(keep: boolean, log: (line: string) => void): Promise<BenchPostgres> {
  const root = join("/tmp", `dex-bench-${randomBytes(4).toString("hex")}`);
  const dataDir = join(root, "data");
  let pg: RunningPostgres = await startEmbeddedPostgres({ dataDir });
  let queryCounter: BenchPostgres["queryCounter"] = "pg_stat_database";
  // shared_preload_libraries needs a restart: set it with ALTER SYSTEM, then stop and start the same data directory.
  {
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    await sql.unsafe(`alter system set shared_preload_libraries = 'pg_stat_statements'`);
    await sql.end();
    await pg.stop();
    pg = await startEmbeddedPostgres({ dataDir, port: pg.port });
  }
  const admin = postgres(pg.url, { max: 2, onnotice: () => {} });
  try {
    await admin.unsafe(`create extension if not exists pg_stat_statements`);
    queryCounter = "pg_stat_statements";
  } catch (err) {
    log(`pg_stat_statements unavailable (${(err as Error).message}); queries/s falls back to transactions/s from pg_stat_database`);
  }
  const running = pg;
  // BENCH_PG_SOCKET=1: every system (dex and DBOS alike) reaches Postgres over its Unix socket instead of TCP
  // on localhost, for the A/B in docs/performance.md. Both drivers read `?host=/dir` as the socket directory.
  const socketDir = process.env.BENCH_PG_SOCKET === "1" ? await unixSocketDirectory(admin) : undefined;
  const urlFor = (db: string): string => (socketDir ? overSocket(running.urlFor(db), socketDir) : running.urlFor(db));
  if (socketDir) log(`Postgres over its Unix socket in ${socketDir} (BENCH_PG_SOCKET=1)`);
  return {
    url: socketDir ? overSocket(running.url, socketDir) : running.url,
    urlFor,
    queryCounter,
    admin,
    postmasterPid: () => Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]),
    async createDatabase(name, template) {
      await admin.unsafe(`create database ${name}${template ? ` template ${template}` : ""}`);
      return urlFor(name);
    },
    async dropDatabase(name) {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
    },
    async counters(database) {
      const [db] = await admin<{ transactions: string }[]>`
        select (xact_commit + xact_rollback)::text as transactions from pg_stat_database where datname = ${database}`;
      let statements = Number.NaN;
      if (queryCounter === "pg_stat_statements") {
        const [row] = await admin<{ calls: string | null }[]>`
          select sum(calls)::text as calls from pg_stat_statements s join pg_database d on d.oid = s.dbid
          where d.datname = ${database} and s.query !~* '^\\s*(begin|commit|rollback|start transaction|set|reset|show|discard|deallocate)\\b'`;
        statements = Number(row?.calls ?? 0);
      }
      const transactions = Number(db?.transactions ?? 0);
      // Without pg_stat_statements, transactions stand in for statements (say so: see queryCounter).
      return { at: Date.now(), statements: Number.isNaN(statements) ? transactions : statements, transactions };
    },
    async topStatements(database, limit) {
      if (queryCounter !== "pg_stat_statements") return [];
      const rows = await admin<{ calls: string; mean_ms: number; query: string }[]>`
        select calls::text, mean_exec_time as mean_ms, regexp_replace(query, '\\s+', ' ', 'g') as query
        from pg_stat_statements s join pg_database d on d.oid = s.dbid
        where d.datname = ${database} order by s.calls desc limit ${limit}`;
      return rows.map((r) => ({ calls: Number(r.calls), meanMs: Math.round(r.mean_ms * 1000) / 1000, query: r.query.slice(0, 160) }));
    },
    async stop() {
      await admin.end({ timeout: 2 });
      await running.stop();
      if (!keep) await rm(root, { recursive: true, force: true });
      else log(`Postgres data kept in ${dataDir}`);
    },
  };
}

async function unixSocketDirectory(admin: postgres.Sql): Promise<string> {
  const [row] = await admin<{ dirs: string }[]>`select current_setting('unix_socket_directories') as dirs`;
  const dir = row?.dirs.split(",")[0]?.trim();
  if (!dir) throw new Error("BENCH_PG_SOCKET=1, but this Postgres listens on no Unix socket (unix_socket_directories is empty)");
  return dir;
}

/** The same URL, with the socket directory as its host (the port still names the socket file). */
function overSocket(url: string, dir: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set("host", dir);
  return parsed.toString();
}

/** Statements and transactions per second between two counter snapshots. */
export function perSecond(before: QueryCounters, after: QueryCounters): { statementsPerSec: number; transactionsPerSec: number; statements: number; transactions: number } {
  const seconds = (after.at - before.at) / 1000;
  return {
    statements: after.statements - before.statements,
    transactions: after.transactions - before.transactions,
    statementsPerSec: (after.statements - before.statements) / seconds,
    transactionsPerSec: (after.transactions - before.transactions) / seconds,
  };
}

import type { Command } from "commander";
import { readFile } from "node:fs/promises";
import {
  BOOTSTRAP_ADMIN_KEY_NAME,
  bootstrapAdminKey,
  connectedServers,
  DEFAULT_LIMITS,
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_PORT,
  loadMigrations,
  migrate,
  migrationStatus,
  openDatabase,
  repairChecksums,
  SchemaMismatchError,
  startServer,
  tracingFromEnvironment,
  type BootstrapOutcome,
} from "@dex/server";
import { UsageError } from "../errors.js";
import { formatMigrationStatus, formatRepaired } from "./migrate-status.js";
import { parseIntFlag } from "../options.js";
import { defaultRetention, retentionSweepIntervalMs, withDefaultRetentionFlag } from "../retention-flags.js";
import { runUntilSignal } from "../signals.js";
import { serverTls, transportNote, withServerTlsFlags, type ServerTlsFlags } from "../tls.js";

export interface DatabaseFlags {
  databaseUrl?: string;
}

export function databaseUrl(flags: DatabaseFlags): string {
  const url = flags.databaseUrl ?? process.env.DEX_DATABASE_URL;
  if (!url) throw new UsageError("no database: pass --database-url or set DEX_DATABASE_URL");
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new UsageError(`--database-url must be a postgres:// URL, got "${url}"`);
  }
  return url;
}

/** `--max-message-bytes`, shared with `dex dev`. */
export const MAX_MESSAGE_BYTES_HELP = `largest request accepted, in bytes; larger ones get RESOURCE_EXHAUSTED (default: $DEX_MAX_MESSAGE_BYTES or ${DEFAULT_MAX_MESSAGE_BYTES}, 16 MiB)`;

/** The --max-message-bytes flag, else DEX_MAX_MESSAGE_BYTES, else undefined (the server's default). */
export function maxMessageBytes(flag: string | undefined): number | undefined {
  const text = flag ?? (process.env.DEX_MAX_MESSAGE_BYTES || undefined);
  return text === undefined ? undefined : parseIntFlag("--max-message-bytes", text, 1024, 2 ** 31 - 1);
}

/** --max-payload-bytes, else DEX_MAX_PAYLOAD_BYTES, else undefined (the server's default, 2 MiB). */
function maxPayloadBytes(flag: string | undefined): number | undefined {
  const text = flag ?? (process.env.DEX_MAX_PAYLOAD_BYTES || undefined);
  return text === undefined ? undefined : parseIntFlag("--max-payload-bytes", text, 1024, 256 * 1024 * 1024);
}

interface DatabaseTimeoutFlags {
  statementTimeoutMs?: string;
  dbStallMarginMs?: string;
  dbPoolSize?: string;
}

/** --statement-timeout-ms, --db-stall-margin-ms and --db-pool-size, else their environment variables, else the server's defaults. */
function databaseTimeouts(flags: DatabaseTimeoutFlags): { statementTimeoutMs?: number; stallMarginMs?: number; databasePoolSize?: number } {
  const timeout = flags.statementTimeoutMs ?? (process.env.DEX_STATEMENT_TIMEOUT_MS || undefined);
  const margin = flags.dbStallMarginMs ?? (process.env.DEX_DB_STALL_MARGIN_MS || undefined);
  const pool = flags.dbPoolSize ?? (process.env.DEX_DB_POOL_SIZE || undefined);
  return {
    databasePoolSize: pool === undefined ? undefined : parseIntFlag("--db-pool-size", pool, 1, 1000),
    statementTimeoutMs: timeout === undefined ? undefined : parseIntFlag("--statement-timeout-ms", timeout, 100, 2 ** 31 - 1),
    stallMarginMs: margin === undefined ? undefined : parseIntFlag("--db-stall-margin-ms", margin, 0, 2 ** 31 - 1),
  };
}

/** The web UI's port with --ui: the one after the gRPC port's default. */
const DEFAULT_UI_PORT = DEFAULT_PORT + 1;

export function registerServerCommand(program: Command): void {
  const command = program
    .command("server")
    .description("run the dex server against an existing, migrated Postgres database")
    .option("--database-url <url>", "Postgres URL (default: $DEX_DATABASE_URL)")
    .option("--host <host>", "interface to listen on (default: $DEX_HOST or 0.0.0.0)")
    .option("--port <port>", `port to listen on (default: $DEX_PORT or ${DEFAULT_PORT})`)
    .option("--metrics-port <port>", "serve Prometheus metrics at http://<host>:<port>/metrics (default: $DEX_METRICS_PORT, else none; 0 picks a free port)")
    .option("--ui", `serve the web UI (and the API over Connect for it) at http://<host>:${DEFAULT_UI_PORT}/ (default: on when $DEX_UI_PORT is set)`)
    .option("--ui-port <port>", `port of the web UI; implies --ui (default: $DEX_UI_PORT or ${DEFAULT_UI_PORT}; 0 picks a free port)`)
    .option("--max-message-bytes <n>", MAX_MESSAGE_BYTES_HELP)
    .option("--statement-timeout-ms <ms>", "statement_timeout of the server's database statements (default: $DEX_STATEMENT_TIMEOUT_MS or 30000)")
    .option(
      "--db-stall-margin-ms <ms>",
      "a database connection owing an answer for statement_timeout plus this long counts as dead and is replaced (default: $DEX_DB_STALL_MARGIN_MS or 5000)",
    )
    .option("--db-pool-size <n>", "connections of the server's main database pool (default: $DEX_DB_POOL_SIZE or 10)")
    .option(
      "--sticky-fallback-ms <ms>",
      "how long a run's next workflow task waits for the worker that holds the run cached before any worker may take it; 0 turns sticky routing off (default: $DEX_STICKY_FALLBACK_MS or 3000)",
    )
    .option(
      "--insecure-no-auth",
      "serve every call without an API key; only where the network alone keeps strangers out (default: $DEX_INSECURE_NO_AUTH=1, else keys required)",
    )
    .option(
      "--max-payload-bytes <n>",
      `largest payload (input, result, event payload, heartbeat details, failure) accepted, in bytes; larger ones get INVALID_ARGUMENT (default: $DEX_MAX_PAYLOAD_BYTES or ${DEFAULT_LIMITS.maxPayloadBytes}, 2 MiB)`,
    );
  withServerTlsFlags(withDefaultRetentionFlag(command)).action(
    async (
      flags: DatabaseFlags &
        ServerTlsFlags & {
          defaultRetention?: string;
          host?: string;
          port?: string;
          metricsPort?: string;
          ui?: boolean;
          uiPort?: string;
          maxMessageBytes?: string;
          maxPayloadBytes?: string;
          stickyFallbackMs?: string;
          insecureNoAuth?: boolean;
        },
    ) => {
      const url = databaseUrl(flags);
      const portText = flags.port ?? process.env.DEX_PORT;
      const port = portText === undefined ? DEFAULT_PORT : parseIntFlag("--port", portText, 0, 65535);
      const metricsText = flags.metricsPort ?? (process.env.DEX_METRICS_PORT || undefined);
      const metricsPort = metricsText === undefined ? undefined : parseIntFlag("--metrics-port", metricsText, 0, 65535);
      const host = flags.host ?? process.env.DEX_HOST ?? "0.0.0.0";
      const uiText = flags.uiPort ?? (process.env.DEX_UI_PORT || (flags.ui ? String(DEFAULT_UI_PORT) : undefined));
      const uiPort = uiText === undefined ? undefined : parseIntFlag("--ui-port", uiText, 0, 65535);
      const tls = serverTls(flags);
      const limits = { maxPayloadBytes: maxPayloadBytes(flags.maxPayloadBytes) };
      const requireApiKeys = !(flags.insecureNoAuth || insecureNoAuthFromEnv());
      const stickyText = flags.stickyFallbackMs ?? (process.env.DEX_STICKY_FALLBACK_MS || undefined);
      const stickyFallbackMs = stickyText === undefined ? undefined : parseIntFlag("--sticky-fallback-ms", stickyText, 0, 2 ** 31 - 1);
      // OpenTelemetry traces, off unless the standard OTEL_* variables turn them on (decision 0030).
      const tracing = tracingFromEnvironment(process.env);
      const server = await startServer({
        tracer: tracing?.tracer,
        databaseUrl: url,
        host,
        port,
        metricsPort,
        uiPort,
        tls,
        maxMessageBytes: maxMessageBytes(flags.maxMessageBytes),
        limits,
        requireApiKeys,
        stickyFallbackMs,
        defaultRetentionSeconds: defaultRetention(flags.defaultRetention),
        retentionSweepIntervalMs: retentionSweepIntervalMs(),
        ...databaseTimeouts(flags as DatabaseTimeoutFlags),
      });
      if (server.metricsAddress) process.stdout.write(`dex metrics at http://${server.metricsAddress}/metrics\n`);
      // Armed before the announcement: a supervisor or test that reads "listening" may send SIGTERM
      // at once, and a signal with no handler yet kills the process instead of stopping it cleanly.
      const stopped = runUntilSignal(async () => {
        await server.close();
        await tracing?.shutdown();
      });
      if (server.uiAddress) process.stdout.write(`dex web UI at http://${server.uiAddress}/\n`);
      process.stdout.write(`${authLine(requireApiKeys)}\n`);
      process.stdout.write(`dex server listening on ${server.address}${transportNote(tls)}\n`);
      await stopped;
    },
  );
}

/** DEX_INSECURE_NO_AUTH: 1/true/yes turns keys off; anything else set is a mistake worth a line. */
function insecureNoAuthFromEnv(): boolean {
  const text = process.env.DEX_INSECURE_NO_AUTH;
  if (!text || /^(0|false|no)$/i.test(text)) return false;
  if (/^(1|true|yes)$/i.test(text)) return true;
  throw new UsageError(`DEX_INSECURE_NO_AUTH must be 1 (serve without API keys) or 0, got "${text}"`);
}

/** The line before "listening on" (its own line: scripts read the address off the listening line). */
export function authLine(requireApiKeys: boolean): string {
  return requireApiKeys
    ? "authentication: API keys required (create them with `dex auth create`)"
    : "authentication: none, every caller may do everything (--insecure-no-auth)";
}

export function registerMigrateCommand(program: Command): void {
  program
    .command("migrate")
    .description("apply pending database migrations (safe to run concurrently and repeatedly)")
    .option("--database-url <url>", "Postgres URL (default: $DEX_DATABASE_URL)")
    .option(
      "--bootstrap-admin-key-file <path>",
      `then store the API key in this file (text from \`dex auth create\` or generated) as the admin key "${BOOTSTRAP_ADMIN_KEY_NAME}", unless that key exists (default: $DEX_BOOTSTRAP_ADMIN_KEY_FILE)`,
    )
    .option(
      "--status",
      "print each migration by release (applied, pending with its safety beside older servers, unknown to this dex, checksum mismatch) with its checksum, the dex servers connected and what dex migrate would say, and change nothing",
    )
    .option(
      "--allow-older-servers",
      "apply even though dex servers of an older release are connected that a pending migration is unsafe with, or would leave two releases behind (default: refuse, naming them); see docs/upgrades.md",
    )
    .option(
      "--repair-checksums",
      "record this dex's checksums for applied migrations whose files were edited harmlessly (a comment, whitespace), then migrate; see docs/upgrades.md",
    )
    .action(async (flags: DatabaseFlags & { bootstrapAdminKeyFile?: string; status?: boolean; repairChecksums?: boolean; allowOlderServers?: boolean }) => {
      const url = databaseUrl(flags);
      if (flags.status && (flags.repairChecksums || flags.allowOlderServers)) {
        throw new UsageError(`--status changes nothing; pass it without ${flags.repairChecksums ? "--repair-checksums" : "--allow-older-servers"}`);
      }
      // Read before touching the database: a missing or unreadable secret fails the step at once.
      const bootstrap = await readBootstrapKeyFile(flags.bootstrapAdminKeyFile ?? (process.env.DEX_BOOTSTRAP_ADMIN_KEY_FILE || undefined));
      const sql = openDatabase({ url, maxConnections: 1, applicationName: "dex migrate" });
      try {
        const known = await loadMigrations();
        if (flags.status) {
          process.stdout.write(formatMigrationStatus(await migrationStatus(sql, known), known, await connectedServers(sql)));
          return;
        }
        if (flags.repairChecksums) process.stdout.write(formatRepaired(await repairChecksums(sql, known)));
        let applied: number[];
        try {
          applied = await migrate(sql, known, {
            allowOlderServers: flags.allowOlderServers === true,
            onWarning: (message) => process.stderr.write(`dex: warning: ${message}\n`),
          });
        } catch (err) {
          // A refusal already says what to do; anything else failed while applying SQL.
          if (err instanceof SchemaMismatchError) throw err;
          throw new Error(`migration failed: ${(err as Error).message}`, { cause: err });
        }
        process.stdout.write(
          applied.length === 0
            ? "database is up to date\n"
            : `applied ${applied.length} migration(s): ${applied.join(", ")}\n`,
        );
        if (bootstrap) process.stdout.write(`${bootstrapLine(await bootstrapAdminKey(sql, bootstrap.text, bootstrap.path), bootstrap.path)}\n`);
      } finally {
        await sql.end({ timeout: 5 });
      }
    });
}

async function readBootstrapKeyFile(path: string | undefined): Promise<{ path: string; text: string } | undefined> {
  if (path === undefined) return undefined;
  try {
    return { path, text: await readFile(path, "utf8") };
  } catch (err) {
    throw new UsageError(
      `cannot read the bootstrap admin key file ${path} (--bootstrap-admin-key-file, DEX_BOOTSTRAP_ADMIN_KEY_FILE): ${(err as Error).message}; ` +
        "check the path and that this user may read it",
    );
  }
}

/** What `dex migrate` says about the bootstrap key: never its text. */
function bootstrapLine({ outcome, key }: BootstrapOutcome, path: string): string {
  switch (outcome) {
    case "created":
      return `stored admin key "${key.name}" (id ${key.id}) from ${path}; clients use the file's text as their API key`;
    case "present":
      return `admin key "${key.name}" (id ${key.id}) from ${path} already exists`;
    case "revoked":
      return `admin key "${key.name}" was revoked at ${key.revokedAt!.toISOString()}; left revoked (${path} is not used again)`;
  }
}

import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import type { Command } from "commander";
import type { DexServer } from "@dex/server";
import { DEFAULT_PORT } from "../connection.js";
import { defaultRetention, retentionSweepIntervalMs, withDefaultRetentionFlag } from "../retention-flags.js";
import { UsageError } from "../errors.js";
import { parseIntFlag } from "../options.js";
import { runUntilSignal } from "../signals.js";
import { serverTls, transportNote, withServerTlsFlags, type ServerTlsFlags } from "../tls.js";
import { MAX_MESSAGE_BYTES_HELP, maxMessageBytes } from "./server.js";

const DEV_DATABASE = "dex";

export function registerDevCommand(program: Command): void {
  const command = program
    .command("dev")
    .description("run dex for development: an embedded Postgres, migrations, default queues, and the server")
    .option("--port <port>", `gRPC port (default ${DEFAULT_PORT}; 0 picks a free one)`)
    .option("--host <host>", "interface to listen on", "127.0.0.1")
    .option("--data-dir <dir>", "keep Postgres data here across restarts (default: a temporary directory, deleted on exit)")
    .option("--metrics-port <port>", "Prometheus metrics port, or \"off\" (default: a free port, printed at start)")
    .option("--ui-port <port>", "web UI port, or \"off\" (default: a free port, printed at start)")
    .option("--max-message-bytes <n>", MAX_MESSAGE_BYTES_HELP)
    .option("--require-auth", "require API keys as `dex server` does (create them with `dex auth create --database-url <the database printed>`); default: open");
  // Plaintext unless asked: local development and the tests need no certificates.
  withServerTlsFlags(withDefaultRetentionFlag(command)).action(
    async (
      flags: ServerTlsFlags & { defaultRetention?: string; port?: string; host: string; dataDir?: string; metricsPort?: string; uiPort?: string; maxMessageBytes?: string; requireAuth?: boolean },
    ) => {
      const port = flags.port === undefined ? DEFAULT_PORT : parseIntFlag("--port", flags.port, 0, 65535);
      // On by default in dev, on a free port: a fixed default would collide with a second `dex dev`.
      if (flags.metricsPort !== undefined && flags.metricsPort !== "off" && !/^\d+$/.test(flags.metricsPort)) {
        throw new UsageError(`--metrics-port must be a port number (0 picks a free one) or "off", got "${flags.metricsPort}"`);
      }
      const metricsPort =
        flags.metricsPort === "off" ? undefined : parseIntFlag("--metrics-port", flags.metricsPort ?? "0", 0, 65535);
      if (flags.uiPort !== undefined && flags.uiPort !== "off" && !/^\d+$/.test(flags.uiPort)) {
        throw new UsageError(`--ui-port must be a port number (0 picks a free one) or "off", got "${flags.uiPort}"`);
      }
      const uiPort = flags.uiPort === "off" ? undefined : parseIntFlag("--ui-port", flags.uiPort ?? "0", 0, 65535);
      // Before Postgres starts: a bad certificate file is a usage error with nothing to stop.
      const tls = serverTls(flags);
      const maxBytes = maxMessageBytes(flags.maxMessageBytes);
      const defaultRetentionSeconds = defaultRetention(flags.defaultRetention);
      const persistent = flags.dataDir !== undefined;
      const dataDir = persistent
        ? resolve(flags.dataDir!)
        : `${tmpdir()}/dex-dev-${process.pid}-${randomBytes(3).toString("hex")}`;

      // Loaded here, not at the top: `dex --help` and the client commands never need them.
      const { migrate, openDatabase, startEmbeddedPostgres, startServer, tracingFromEnvironment } = await import("@dex/server");
      const pg = await startEmbeddedPostgres({ dataDir });
      let server: DexServer | undefined;
      let stopped: Promise<void> = Promise.resolve();
      // OpenTelemetry traces, as `dex server`: off unless the standard OTEL_* variables turn them on (decision 0030).
      const tracing = tracingFromEnvironment(process.env);
      const stopAll = async () => {
        await server?.close();
        await tracing?.shutdown();
        await pg.stop();
        if (!persistent) await rm(dataDir, { recursive: true, force: true });
      };
      try {
        await createDatabaseIfMissing(pg.url, DEV_DATABASE);
        const databaseUrl = pg.urlFor(DEV_DATABASE);
        const sql = openDatabase({ url: databaseUrl, maxConnections: 1, applicationName: "dex migrate" });
        try {
          await migrate(sql);
        } finally {
          await sql.end({ timeout: 5 });
        }
        server = await startServer({
          tracer: tracing?.tracer,
          databaseUrl,
          host: flags.host,
          port,
          metricsPort,
          uiPort,
          tls,
          maxMessageBytes: maxBytes,
          requireApiKeys: flags.requireAuth === true,
          defaultRetentionSeconds,
          retentionSweepIntervalMs: retentionSweepIntervalMs(),
          ensureQueues: [
            { type: "workflow", name: "default" },
            { type: "activity", name: "default" },
          ],
        });
        // Armed before the announcement: whoever reads "listening" may signal at once.
        stopped = runUntilSignal(stopAll);
        process.stdout.write(
          [
            `dex dev server listening on ${server.address}${transportNote(tls)}`,
            `database: ${databaseUrl}`,
            `data directory: ${dataDir}${persistent ? "" : " (temporary, deleted on exit; pass --data-dir to keep it)"}`,
            `queues: default (workflow), default (activity)`,
            flags.requireAuth
              ? "authentication: API keys required (create them with `dex auth create --database-url` and the database above)"
              : "authentication: none (open, for development; --require-auth requires API keys)",
            ...(server.metricsAddress ? [`metrics: http://${server.metricsAddress}/metrics`] : []),
            ...(server.uiAddress ? [`web UI: http://${server.uiAddress}/`] : []),
            `press Ctrl-C to stop`,
            "",
          ].join("\n"),
        );
      } catch (err) {
        await stopAll().catch(() => {});
        throw err;
      }
      await stopped;
    },
  );
}

async function createDatabaseIfMissing(adminUrl: string, name: string): Promise<void> {
  const { default: postgres } = await import("postgres");
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ exists: boolean }[]>`select exists(select 1 from pg_database where datname = ${name})`;
    if (!row?.exists) await sql.unsafe(`create database "${name}"`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

import type { Command } from "commander";
import { DEFAULT_LIMITS, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PORT, migrate, openDatabase, startServer } from "@dex/server";
import { UsageError } from "../errors.js";
import { parseIntFlag } from "../options.js";
import { runUntilSignal } from "../signals.js";
import { serverTls, transportNote, withServerTlsFlags, type ServerTlsFlags } from "../tls.js";

interface DatabaseFlags {
  databaseUrl?: string;
}

function databaseUrl(flags: DatabaseFlags): string {
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

export function registerServerCommand(program: Command): void {
  const command = program
    .command("server")
    .description("run the dex server against an existing, migrated Postgres database")
    .option("--database-url <url>", "Postgres URL (default: $DEX_DATABASE_URL)")
    .option("--host <host>", "interface to listen on (default: $DEX_HOST or 0.0.0.0)")
    .option("--port <port>", `port to listen on (default: $DEX_PORT or ${DEFAULT_PORT})`)
    .option("--metrics-port <port>", "serve Prometheus metrics at http://<host>:<port>/metrics (default: $DEX_METRICS_PORT, else none; 0 picks a free port)")
    .option("--max-message-bytes <n>", MAX_MESSAGE_BYTES_HELP)
    .option(
      "--max-payload-bytes <n>",
      `largest payload (input, result, event payload, heartbeat details, failure) accepted, in bytes; larger ones get INVALID_ARGUMENT (default: $DEX_MAX_PAYLOAD_BYTES or ${DEFAULT_LIMITS.maxPayloadBytes}, 2 MiB)`,
    );
  withServerTlsFlags(command).action(
    async (flags: DatabaseFlags & ServerTlsFlags & { host?: string; port?: string; metricsPort?: string; maxMessageBytes?: string; maxPayloadBytes?: string }) => {
      const url = databaseUrl(flags);
      const portText = flags.port ?? process.env.DEX_PORT;
      const port = portText === undefined ? DEFAULT_PORT : parseIntFlag("--port", portText, 0, 65535);
      const metricsText = flags.metricsPort ?? (process.env.DEX_METRICS_PORT || undefined);
      const metricsPort = metricsText === undefined ? undefined : parseIntFlag("--metrics-port", metricsText, 0, 65535);
      const host = flags.host ?? process.env.DEX_HOST ?? "0.0.0.0";
      const tls = serverTls(flags);
      const limits = { maxPayloadBytes: maxPayloadBytes(flags.maxPayloadBytes) };
      const server = await startServer({ databaseUrl: url, host, port, metricsPort, tls, maxMessageBytes: maxMessageBytes(flags.maxMessageBytes), limits });
      if (server.metricsAddress) process.stdout.write(`dex metrics at http://${server.metricsAddress}/metrics\n`);
      process.stdout.write(`dex server listening on ${server.address}${transportNote(tls)}\n`);
      await runUntilSignal(async () => {
        await server.close();
      });
    },
  );
}

export function registerMigrateCommand(program: Command): void {
  program
    .command("migrate")
    .description("apply pending database migrations (safe to run concurrently and repeatedly)")
    .option("--database-url <url>", "Postgres URL (default: $DEX_DATABASE_URL)")
    .action(async (flags: DatabaseFlags) => {
      const sql = openDatabase({ url: databaseUrl(flags), maxConnections: 1, applicationName: "dex migrate" });
      try {
        const applied = await migrate(sql);
        process.stdout.write(
          applied.length === 0
            ? "database is up to date\n"
            : `applied ${applied.length} migration(s): ${applied.join(", ")}\n`,
        );
      } catch (err) {
        throw new Error(`migration failed: ${(err as Error).message}`, { cause: err });
      } finally {
        await sql.end({ timeout: 5 });
      }
    });
}

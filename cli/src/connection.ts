import type { Command } from "commander";
import type { Client } from "@dex/sdk";
import { isDatabaseUnavailable, isDexError, UsageError } from "./errors.js";
import { clientTls, withClientTlsFlags, type ClientTlsFlags } from "./tls.js";

/**
 * The SDK's default address, written out rather than imported: this module is loaded for every
 * command's --help, and the SDK (with grpc-js and protobuf) is most of a client command's start-up
 * time. Keep it equal to @dex/sdk's DEFAULT_ADDRESS and @dex/server's DEFAULT_PORT.
 */
export const DEFAULT_PORT = 7460;
export const DEFAULT_ADDRESS = `127.0.0.1:${DEFAULT_PORT}`;

export interface ClientFlags extends ClientTlsFlags {
  address?: string;
  apiKey?: string;
  json?: boolean;
}

/** Adds the flags every client command takes. */
export function withClientFlags(command: Command): Command {
  return withClientTlsFlags(
    command
      .option("--address <host:port>", `dex server address (default: $DEX_ADDRESS or ${DEFAULT_ADDRESS})`)
      .option("--api-key <key>", "API key for a server that requires one, as `dex auth create` printed it (default: $DEX_API_KEY, which process lists do not show)"),
  ).option("--json", "print machine-readable JSON");
}

export function resolveAddress(flags: ClientFlags): string {
  // An empty DEX_ADDRESS counts as unset, as in the SDK (and as DEX_API_KEY here).
  return flags.address ?? (process.env.DEX_ADDRESS || undefined) ?? DEFAULT_ADDRESS;
}

/** --api-key, else DEX_API_KEY (empty counts as unset), else none. */
export function resolveApiKey(flags: ClientFlags): string | undefined {
  const key = flags.apiKey ?? (process.env.DEX_API_KEY || undefined);
  if (key !== undefined && !/^[\x21-\x7e]+$/.test(key)) {
    const source = flags.apiKey !== undefined ? "--api-key" : "DEX_API_KEY";
    throw new UsageError(`${source} must be the key text \`dex auth create\` printed (dex_...), with no spaces or line breaks`);
  }
  return key;
}

/**
 * A command retries an unreachable server (UNAVAILABLE) for a few seconds only: enough to ride out a
 * blip between two commands of a script, short enough that a wrong --address fails while the person
 * at the prompt still waits. The SDK's default (30 s) suits long-lived processes, not a prompt.
 */
const COMMAND_RETRY = { maxElapsed: "3s" } as const;

/**
 * Runs `fn` with a connected client, closing it afterwards; errors carry the address, whether
 * TLS was on and whether a key was sent, for the hint, and, when the server answered UNAVAILABLE
 * without saying why, what its health check says (`serverHealth`). `retryFor` overrides how long
 * an unreachable server is retried (a command that waits for a run rides through a restart).
 */
export async function withClient<T>(flags: ClientFlags, fn: (client: Client) => Promise<T>, retryFor?: `${number}s`): Promise<T> {
  const address = resolveAddress(flags);
  const tls = clientTls(flags);
  if (tls) dropIpServerNameWarning();
  const apiKey = resolveApiKey(flags);
  const { createClient } = await import("@dex/sdk");
  const client = createClient({ address, retry: retryFor ? { maxElapsed: retryFor } : COMMAND_RETRY, ...(tls ? { tls } : {}), ...(apiKey ? { apiKey } : {}) });
  try {
    return await fn(client);
  } catch (err) {
    if (err && typeof err === "object") {
      Object.assign(err, { address, tls: tls !== undefined, apiKey: apiKey !== undefined });
      if (answeredUnavailable(err)) {
        const { checkHealth } = await import("./commands/health.js");
        const answer = await checkHealth({ address, tls, apiKey }, "", HEALTH_HINT_TIMEOUT_MS).catch(() => undefined);
        if (answer && "status" in answer) Object.assign(err, { serverHealth: answer.status });
      }
    }
    throw err;
  } finally {
    client.close();
  }
}

/** How long a failed command waits for the health answer that explains an UNAVAILABLE. */
const HEALTH_HINT_TIMEOUT_MS = 2_000;

/**
 * UNAVAILABLE from a server that was reached but did not say the database is away (a server
 * shutting down, or another version's words): its health check tells the database apart from the
 * rest. Not when no connection was made: the check would fail the same way, only later.
 */
function answeredUnavailable(err: object): boolean {
  if (!isDexError(err) || err.code !== "UNAVAILABLE" || isDatabaseUnavailable(err.message)) return false;
  return !/No connection established|failed to connect|Connection dropped|ECONNREFUSED|ENOTFOUND|EAI_AGAIN/i.test(err.message);
}

/**
 * grpc-js sends the address's host as the TLS server name even when it is an IP address
 * (grpc/grpc-node#1919), and Node then prints a DEP0123 deprecation warning on stderr. The
 * connection is fine (the certificate is still checked against the IP), so in the CLI, whose stderr
 * is one line per error, that one warning is dropped. Other warnings pass through.
 */
let droppingIpServerNameWarning = false;
function dropIpServerNameWarning(): void {
  if (droppingIpServerNameWarning) return;
  droppingIpServerNameWarning = true;
  const emitWarning = process.emitWarning;
  process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]) {
    const [typeOrOptions, code] = rest;
    const warningCode = typeof typeOrOptions === "object" && typeOrOptions !== null ? (typeOrOptions as { code?: string }).code : code;
    if (warningCode === "DEP0123") return;
    return (emitWarning as (...args: unknown[]) => void).call(this, warning, ...rest);
  } as typeof process.emitWarning;
}

import { Command } from "commander";
import { createClient, DEFAULT_ADDRESS, type Client } from "@dex/sdk";
import { clientTls, withClientTlsFlags, type ClientTlsFlags } from "./tls.js";

export interface ClientFlags extends ClientTlsFlags {
  address?: string;
  json?: boolean;
}

/** Adds the flags every client command takes. */
export function withClientFlags(command: Command): Command {
  return withClientTlsFlags(
    command.option("--address <host:port>", `dex server address (default: $DEX_ADDRESS or ${DEFAULT_ADDRESS})`),
  ).option("--json", "print machine-readable JSON");
}

export function resolveAddress(flags: ClientFlags): string {
  return flags.address ?? process.env.DEX_ADDRESS ?? DEFAULT_ADDRESS;
}

/**
 * Runs `fn` with a connected client, closing it afterwards; errors carry the address and whether
 * TLS was on, for the hint.
 */
export async function withClient<T>(flags: ClientFlags, fn: (client: Client) => Promise<T>): Promise<T> {
  const address = resolveAddress(flags);
  const tls = clientTls(flags);
  if (tls) dropIpServerNameWarning();
  const client = createClient({ address, ...(tls ? { tls } : {}) });
  try {
    return await fn(client);
  } catch (err) {
    if (err && typeof err === "object") Object.assign(err, { address, tls: tls !== undefined });
    throw err;
  } finally {
    client.close();
  }
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

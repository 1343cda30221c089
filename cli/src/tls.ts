/**
 * TLS flags, read at the edge: the CLI resolves flags and environment to PEM
 * bytes here, so a missing, unreadable or non-PEM file is one UsageError line
 * naming the flag (or variable) it came from, before anything connects or listens.
 */
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import type { Command } from "commander";
import type { TlsOptions } from "@dex/sdk";
import type { ServerTlsOptions } from "@dex/server";
import { UsageError } from "./errors.js";

export interface ClientTlsFlags {
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
}

export interface ServerTlsFlags {
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
}

/**
 * A flag's value, else its environment variable's. Returns the source too, for the error message.
 * An empty variable counts as unset, so `DEX_TLS_CA= dex …` turns it off.
 */
function setting(flagValue: string | undefined, flag: string, env: string): { value: string; source: string } | undefined {
  if (flagValue !== undefined) return { value: flagValue, source: flag };
  const fromEnv = process.env[env];
  return fromEnv ? { value: fromEnv, source: env } : undefined;
}

/** The bytes of a PEM file; a UsageError naming `source` when it cannot be read or holds no PEM. */
export function readPemFile(file: { value: string; source: string }): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file.value);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message;
    throw new UsageError(`cannot read ${file.source} file ${file.value}: ${reason}`);
  }
  // Catches a path to the wrong file (a DER certificate, a config) by name, before OpenSSL's "no start line".
  if (!bytes.toString("latin1").includes("-----BEGIN ")) {
    throw new UsageError(`${file.source} file ${file.value} is not PEM (no "-----BEGIN" line)`);
  }
  return bytes;
}

/** Adds the client TLS flags (for withClientFlags). */
export function withClientTlsFlags(command: Command): Command {
  return command
    .option("--tls", "connect over TLS, verifying the server with the system's root CAs (implied by the other --tls-* flags; default: $DEX_TLS=1, else plaintext)")
    .option("--tls-ca <file>", "connect over TLS, verifying the server's certificate with this CA (PEM; default: $DEX_TLS_CA)")
    .option("--tls-cert <file>", "client certificate for a server that requires one (mutual TLS; PEM; default: $DEX_TLS_CLIENT_CERT)")
    .option("--tls-key <file>", "private key of --tls-cert (PEM; default: $DEX_TLS_CLIENT_KEY)")
    .option("--tls-server-name <name>", "name the server's certificate must carry, when not the --address host (default: $DEX_TLS_SERVER_NAME)");
}

/**
 * The SDK's `tls` option from the client flags, or undefined for plaintext. The client's certificate
 * comes from DEX_TLS_CLIENT_CERT / _KEY, not DEX_TLS_CERT / _KEY: those are the server's, and a shell
 * that runs a server would otherwise present the server's certificate as its own.
 */
export function clientTls(flags: ClientTlsFlags): TlsOptions | undefined {
  const ca = setting(flags.tlsCa, "--tls-ca", "DEX_TLS_CA");
  const cert = setting(flags.tlsCert, "--tls-cert", "DEX_TLS_CLIENT_CERT");
  const key = setting(flags.tlsKey, "--tls-key", "DEX_TLS_CLIENT_KEY");
  const serverName = setting(flags.tlsServerName, "--tls-server-name", "DEX_TLS_SERVER_NAME");
  const on = flags.tls === true || /^(1|true|yes)$/i.test(process.env.DEX_TLS ?? "");
  if (!on && !ca && !cert && !key && !serverName) return undefined;
  if (cert && !key) throw new UsageError(`${cert.source} needs the certificate's private key: pass --tls-key or set DEX_TLS_CLIENT_KEY`);
  if (key && !cert) throw new UsageError(`${key.source} needs its certificate: pass --tls-cert or set DEX_TLS_CLIENT_CERT`);
  const pair = cert && key ? { cert: readPemFile(cert), key: readPemFile(key) } : undefined;
  if (pair) {
    // Else the SDK's "the ca, cert or key is not usable" leaves the user to guess which flag.
    try {
      createSecureContext(pair);
    } catch (err) {
      throw new UsageError(`${cert!.source} and ${key!.source} are not a certificate and its key: ${(err as Error).message}`);
    }
  }
  return {
    ...(ca ? { ca: readPemFile(ca) } : {}),
    ...pair,
    ...(serverName ? { serverName: serverName.value } : {}),
  };
}

/** Adds the server TLS flags (`dex server`, `dex dev`). */
export function withServerTlsFlags(command: Command): Command {
  return command
    .option("--tls-cert <file>", "serve TLS with this certificate (PEM, with its chain; default: $DEX_TLS_CERT, else plaintext)")
    .option("--tls-key <file>", "private key of --tls-cert (PEM; default: $DEX_TLS_KEY)")
    .option("--tls-client-ca <file>", "mutual TLS: require client certificates signed by this CA (PEM; default: $DEX_TLS_CLIENT_CA)");
}

/** The server's `tls` option from the flags, or undefined for plaintext. */
export function serverTls(flags: ServerTlsFlags): ServerTlsOptions | undefined {
  const cert = setting(flags.tlsCert, "--tls-cert", "DEX_TLS_CERT");
  const key = setting(flags.tlsKey, "--tls-key", "DEX_TLS_KEY");
  const clientCa = setting(flags.tlsClientCa, "--tls-client-ca", "DEX_TLS_CLIENT_CA");
  if (!cert && !key && !clientCa) return undefined;
  if (!cert || !key) {
    const given = (cert ?? key ?? clientCa)!.source;
    throw new UsageError(`${given} needs both the server certificate and its key: pass --tls-cert and --tls-key (or set DEX_TLS_CERT and DEX_TLS_KEY)`);
  }
  return {
    cert: readPemFile(cert),
    key: readPemFile(key),
    ...(clientCa ? { clientCa: readPemFile(clientCa) } : {}),
  };
}

/** How the server's address line describes its transport: "" for plaintext. */
export function transportNote(tls: ServerTlsOptions | undefined): string {
  if (!tls) return "";
  return tls.clientCa ? " (TLS, client certificates required)" : " (TLS)";
}

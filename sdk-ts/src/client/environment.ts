/**
 * Connection settings from options, else from the environment, with the same variables the `dex`
 * CLI reads, so a process configured for `dex` (DEX_ADDRESS, DEX_TLS_*, DEX_API_KEY) runs its SDK
 * clients and workers against the same server without code changes. Read when a client or worker
 * is created, never at import; each option, when given, wins over its variables.
 */
import { readFileSync } from "node:fs";
import type { TlsOptions } from "./connection.js";
import { channelTarget, type Target } from "./target.js";

/** Where and how to reach dex: the options createClient, createWorkflowWorker and createActivityWorker share. */
export interface ConnectionOptions {
  /**
   * The dex server(s): "host:port" ("127.0.0.1:7460", "[::1]:7460", "dex.internal:7460"), or a list
   * of them. Several addresses share one connection that spreads calls over all of them (round
   * robin) and stops using one that goes away; with the client's retries a server restart, or a
   * rolling restart of several, fails no calls. A list holds IP addresses of one family (IPv4 or
   * IPv6); to name several servers by name, use one DNS name with a record per server (every record
   * is used). Default: $DEX_ADDRESS (comma-separated for several), else "127.0.0.1:7460".
   */
  address?: string | readonly string[];
  /**
   * TLS towards the server (see TlsOptions); `false` for plaintext whatever the environment says.
   * Default: from the environment when any of these is set, else plaintext (what `dex dev` serves):
   * $DEX_TLS_CA (a PEM file: the `ca`), $DEX_TLS_CLIENT_CERT and $DEX_TLS_CLIENT_KEY (PEM files:
   * `cert` and `key`, together), $DEX_TLS_SERVER_NAME (`serverName`), $DEX_TLS=1 (TLS verified
   * against the system's roots, when none of the others is set).
   */
  tls?: TlsOptions | false;
  /**
   * API key for a server that requires one (`dex server` does unless started with
   * --insecure-no-auth), sent on every call as `authorization: Bearer <key>`. Create one with
   * `dex auth create`: a `client` or `admin` key for a client, a `worker` key (limited to the
   * worker's task queue if you like) or `admin` key for a worker. Default: $DEX_API_KEY, else none
   * (what `dex dev` expects).
   */
  apiKey?: string;
}

export interface ResolvedConnection {
  readonly target: Target;
  readonly tls: TlsOptions | undefined;
  readonly apiKey: string | undefined;
}

type Env = Readonly<Record<string, string | undefined>>;

/** An empty variable counts as unset, as in the CLI, so `DEX_TLS_CA= node app.js` turns it off. */
function variable(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

export function resolveConnection(options: ConnectionOptions, env: Env = process.env): ResolvedConnection {
  return { target: resolveTarget(options.address, env), tls: resolveTls(options.tls, env), apiKey: options.apiKey ?? variable(env, "DEX_API_KEY") };
}

function resolveTarget(address: ConnectionOptions["address"], env: Env): Target {
  if (address !== undefined) {
    if (typeof address !== "string" && !Array.isArray(address)) throw new TypeError("address must be a string (host:port) or an array of them");
    return channelTarget(typeof address === "string" ? address.split(",") : address, "address");
  }
  const fromEnv = variable(env, "DEX_ADDRESS");
  return channelTarget((fromEnv ?? "127.0.0.1:7460").split(","), "DEX_ADDRESS");
}

function resolveTls(tls: ConnectionOptions["tls"], env: Env): TlsOptions | undefined {
  if (tls === false) return undefined;
  if (tls !== undefined) return tls;
  const ca = variable(env, "DEX_TLS_CA");
  const cert = variable(env, "DEX_TLS_CLIENT_CERT");
  const key = variable(env, "DEX_TLS_CLIENT_KEY");
  const serverName = variable(env, "DEX_TLS_SERVER_NAME");
  const on = /^(1|true|yes)$/i.test(variable(env, "DEX_TLS") ?? "");
  if (!on && !ca && !cert && !key && !serverName) return undefined;
  // The client's pair is DEX_TLS_CLIENT_*, never the server's DEX_TLS_CERT / DEX_TLS_KEY: a shell that
  // also runs a server would otherwise present the server's certificate as the client's.
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError(
      cert ? "DEX_TLS_CLIENT_CERT is set but DEX_TLS_CLIENT_KEY (its private key) is not: set both, or neither" : "DEX_TLS_CLIENT_KEY is set but DEX_TLS_CLIENT_CERT (its certificate) is not: set both, or neither",
    );
  }
  return {
    ...(ca ? { ca: pemFile(ca, "DEX_TLS_CA") } : {}),
    ...(cert && key ? { cert: pemFile(cert, "DEX_TLS_CLIENT_CERT"), key: pemFile(key, "DEX_TLS_CLIENT_KEY") } : {}),
    ...(serverName ? { serverName } : {}),
  };
}

/** The bytes of a PEM file named by a variable; the error names the variable and the file. */
function pemFile(path: string, name: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message;
    throw new TypeError(`cannot read ${name} file ${path}: ${reason}`, { cause: err });
  }
  if (!bytes.toString("latin1").includes("-----BEGIN ")) throw new TypeError(`${name} file ${path} is not PEM (no "-----BEGIN" line)`);
  return bytes;
}

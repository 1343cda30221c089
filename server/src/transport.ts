/**
 * The gRPC port's transport: plaintext, TLS or mutual TLS, and the largest
 * message the server accepts. Kept apart from server.ts so the certificates are
 * read and checked before anything else starts: a bad file fails the start at
 * once, with a message naming the file, and nothing to clean up.
 */
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import * as grpc from "@grpc/grpc-js";

/**
 * Default largest request the server accepts (`maxMessageBytes`): 16 MiB. grpc-js alone would
 * accept 4 MiB; the SDK sends up to 64 MiB, so anything between 16 and 64 MiB gets a clear
 * RESOURCE_EXHAUSTED from the server instead of a hang or an OOM.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** grpc-js takes the limit as a 32-bit int; below 1 KiB not even a poll request fits. */
const MIN_MAX_MESSAGE_BYTES = 1024;
const MAX_MAX_MESSAGE_BYTES = 2 ** 31 - 1;

/** PEM text, as a string or the bytes of a .pem file. */
export type Pem = string | Buffer;

/**
 * TLS for the gRPC port. The certificate and key are given either as files (`certFile`, `keyFile`,
 * read once at start) or as PEM (`cert`, `key`). Health checking and reflection are served on the
 * same port, so they use TLS too.
 */
export interface ServerTlsOptions {
  /** The server's certificate (chain), PEM file. One of certFile and cert is required. */
  certFile?: string;
  /** The server's certificate (chain), PEM. */
  cert?: Pem;
  /** The private key of the certificate, PEM file. One of keyFile and key is required. */
  keyFile?: string;
  /** The private key of the certificate, PEM. */
  key?: Pem;
  /** CA certificate(s) that client certificates must chain to, PEM file. Default: none (no client certificates). */
  clientCaFile?: string;
  /** CA certificate(s) that client certificates must chain to, PEM. */
  clientCa?: Pem;
  /**
   * Mutual TLS: refuse clients without a certificate signed by the client CA. Default: true when a
   * client CA is given, false otherwise. false with a client CA: client certificates are not asked
   * for (grpc-js cannot ask for one without requiring it) and the CA goes unused.
   */
  requireClientCert?: boolean;
}

export interface Transport {
  readonly credentials: grpc.ServerCredentials;
  /** Options for `new grpc.Server(...)`. */
  readonly serverOptions: grpc.ServerOptions;
  /** For the "listening" log line: "plaintext", "tls" or "mutual tls". */
  readonly security: "plaintext" | "tls" | "mutual tls";
}

/** Reads and checks the TLS material; throws an Error saying which file or option is wrong. */
export function createTransport(options: { tls?: ServerTlsOptions; maxMessageBytes?: number }): Transport {
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < MIN_MAX_MESSAGE_BYTES || maxMessageBytes > MAX_MAX_MESSAGE_BYTES) {
    throw new TypeError(`maxMessageBytes must be a whole number from ${MIN_MAX_MESSAGE_BYTES} to ${MAX_MAX_MESSAGE_BYTES}, got ${maxMessageBytes}`);
  }
  const serverOptions: grpc.ServerOptions = {
    // Only what the server receives is capped. What it sends is left unlimited (grpc-js's default,
    // as before): history pages are counted in events, not bytes, and a page the server refused to
    // send would fail the run's workflow task on every attempt. The client caps what it takes.
    "grpc.max_receive_message_length": maxMessageBytes,
  };
  const tls = options.tls;
  if (tls === undefined) return { credentials: grpc.ServerCredentials.createInsecure(), serverOptions, security: "plaintext" };

  const cert = pem("certificate", tls.cert, tls.certFile, "cert", "certFile");
  const key = pem("private key", tls.key, tls.keyFile, "key", "keyFile");
  if (!cert) throw new TypeError("tls: the server certificate is required: give certFile or cert");
  if (!key) throw new TypeError("tls: the server's private key is required: give keyFile or key");
  const clientCa = pem("client CA", tls.clientCa, tls.clientCaFile, "clientCa", "clientCaFile");
  const requireClientCert = tls.requireClientCert ?? clientCa !== undefined;
  if (requireClientCert && !clientCa) {
    throw new TypeError("tls: requireClientCert needs the CA that signs the client certificates: give clientCaFile or clientCa");
  }
  // grpc-js builds the TLS context only when the port binds, and then reports a bad key as "cannot
  // listen". Building it here turns a malformed PEM or a key that does not match into its own error.
  try {
    createSecureContext({ cert, key, ...(clientCa ? { ca: clientCa } : {}) });
  } catch (err) {
    throw new Error(`tls: the server certificate, key or client CA is not usable: ${(err as Error).message}`, { cause: err });
  }
  return {
    credentials: grpc.ServerCredentials.createSsl(requireClientCert ? clientCa! : null, [{ cert_chain: cert, private_key: key }], requireClientCert),
    serverOptions,
    security: requireClientCert ? "mutual tls" : "tls",
  };
}

function pem(what: string, value: Pem | undefined, file: string | undefined, valueName: string, fileName: string): Buffer | undefined {
  if (value !== undefined && file !== undefined) throw new TypeError(`tls: give ${fileName} or ${valueName}, not both`);
  if (file !== undefined) {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} file ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (value === undefined) return undefined;
  if (typeof value === "string") return Buffer.from(value);
  if (Buffer.isBuffer(value)) return value;
  throw new TypeError(`tls: ${valueName} must be a PEM string or a Buffer`);
}

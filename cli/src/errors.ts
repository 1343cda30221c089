/**
 * A DexError from the SDK, recognised by shape: importing the class would load @dex/proto (and
 * grpc-js and protobuf with it) for every command, --help included, where it is most of the time.
 */
export function isDexError(err: unknown): err is Error & { code: string } {
  return err instanceof Error && err.name === "DexError" && typeof (err as { code?: unknown }).code === "string";
}

/**
 * The server's words for a call that failed because its database is away (server/src/api/common.ts
 * answers UNAVAILABLE "the database is unavailable right now; retry shortly").
 */
export function isDatabaseUnavailable(message: string): boolean {
  return /database is unavailable|cannot reach (its|the) database/i.test(message);
}

/**
 * grpc-js nests its reasons ("round_robin: No connection established. Last error: No connection
 * established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: "): keep the
 * innermost, which is the one that says what happened.
 */
export function connectFailure(message: string): string {
  return lastError(message) || message;
}

/** A mistake the user can fix: printed as one line, exit code 1, never a stack trace. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/**
 * Turns any error into the one line the CLI prints. Server errors keep the
 * server's message (it already says what to fix); an unreachable server gets a hint.
 * withClient attaches `address`, `tls` (whether this command connected with TLS) and `apiKey`
 * (whether it sent a key) to the error.
 */
export function describeError(err: unknown, address?: string): string {
  if (err instanceof UsageError) return err.message;
  if (isDexError(err)) {
    const where = address ? ` at ${address}` : "";
    if (err.code === "UNAVAILABLE" && isDatabaseUnavailable(err.message)) {
      return `the dex server${where} is up but cannot reach its database (${err.message}); check that Postgres is running and reachable from the server`;
    }
    if (err.code === "UNAVAILABLE" && (err as { serverHealth?: unknown }).serverHealth === "NOT_SERVING") {
      return `the dex server${where} is up but not serving (${err.message}): it cannot reach its database, or it is shutting down`;
    }
    if (err.code === "UNAVAILABLE" || err.code === "DEADLINE_EXCEEDED") {
      const tls = (err as { tls?: unknown }).tls === true;
      return (
        describeTlsFailure(err.message, where, tls) ??
        `cannot reach the dex server${where} (${connectFailure(err.message)}); is it running? Start one with \`dex dev\` or pass --address`
      );
    }
    // The server's words name the SDK option and the header too; the CLI has one flag to name.
    if (err.code === "UNAUTHENTICATED" && (err as { apiKey?: unknown }).apiKey === false) {
      return `the dex server${where} requires an API key: pass --api-key or set DEX_API_KEY (an admin creates keys with \`dex auth create\`)`;
    }
    return `${err.code}: ${err.message}`;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * A failed connection's message says why only in the words of grpc-js, Node and OpenSSL, and a
 * failed TLS handshake otherwise reads like a server that is down. These patterns pick out the
 * handshake failures a user can fix with a flag, and name the flag.
 */
function describeTlsFailure(message: string, where: string, tls: boolean): string | undefined {
  const reason = lastError(message);
  if (/alert (certificate required|bad certificate|unknown ca|certificate unknown)/i.test(message)) {
    return `the dex server${where} requires a client certificate it trusts (${reason}); pass --tls-cert and --tls-key with one its client CA signed`;
  }
  if (/ALTNAME_INVALID|does not match certificate's altnames/i.test(message)) {
    return `the dex server${where} presented a certificate for another name (${reason}); connect by a name the certificate carries, or pass --tls-server-name`;
  }
  if (/unable to verify|self[- ]signed|local issuer|certificate has expired|certificate is not yet valid|CERT_/i.test(message)) {
    return `the dex server${where} presented a TLS certificate this client does not trust (${reason}); pass --tls-ca with the CA that signed it`;
  }
  if (/wrong version number|packet length too long|unknown protocol/i.test(message)) {
    return `the dex server${where} does not speak TLS (${reason}); drop the --tls-* flags (and DEX_TLS_* variables), or start the server with --tls-cert and --tls-key`;
  }
  // The server dropped the connection without a word: a TLS server reading a plaintext hello does
  // that, and so does a mutual-TLS server whose TLS 1.3 rejection of a client certificate races the close.
  if (/Failed to connect|ECONNRESET|Connection dropped|socket disconnected|socket hang up/i.test(message)) {
    return tls
      ? `the dex server${where} closed the connection during the TLS handshake (${reason}); if it requires client certificates, pass --tls-cert and --tls-key signed by its client CA`
      : `the dex server${where} closed the connection without answering (${reason}); if it serves TLS, pass --tls-ca with the CA that signed its certificate (or --tls)`;
  }
  return undefined;
}

/** The cause inside grpc-js's "No connection established. Last error: …", without OpenSSL's source locations. */
function lastError(message: string): string {
  const text = message.replace(/^.*Last error: /s, "").replace(/\.?\s*Resolution note:.*$/s, "").trim();
  const openssl = /SSL routines:[^:]*:([^:]+)/.exec(text);
  if (openssl) return openssl[1]!.trim();
  return text.replace(/^Error( \[[A-Z_]+\])?: /, "").replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)$/, "");
}

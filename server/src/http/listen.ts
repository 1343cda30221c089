/**
 * Binds one of the server's plain-HTTP endpoints (metrics, web UI): listen on
 * host:port (a bind error rejects with a message naming the endpoint), log later
 * socket errors, and close idempotently, dropping idle keep-alive connections so
 * a scraper or browser that holds one open does not hold shutdown up.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../logger.js";

export interface HttpEndpoint {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** "host:port" of the endpoint. */
  readonly address: string;
  /** Stops listening and drops idle keep-alive connections. */
  close(): Promise<void>;
}

export async function listenHttp(server: Server, options: { host: string; port: number; what: string; logger: Logger }): Promise<HttpEndpoint> {
  // A client that keeps its connection open must not hold close() up for long.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new Error(`cannot listen for ${options.what} on ${options.host}:${options.port}: ${err.message}`, { cause: err }));
    server.once("error", onError);
    server.listen(options.port, options.host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => options.logger.warn(`${options.what} endpoint error`, { err }));
  const port = (server.address() as AddressInfo).port;
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  let closing: Promise<void> | undefined;
  return {
    port,
    address: `${host}:${port}`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

/**
 * The HTTP endpoint Prometheus scrapes: GET /metrics on its own port, plain
 * node:http (no framework for one route). Separate from the gRPC port so it
 * can be exposed to the monitoring network only.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../logger.js";

export interface MetricsEndpoint {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** "host:port" of the endpoint; scrape http://<address>/metrics. */
  readonly address: string;
  /** Stops listening and drops idle keep-alive connections of scrapers. */
  close(): Promise<void>;
}

export async function startMetricsEndpoint(options: {
  host: string;
  port: number;
  render: () => Promise<string>;
  /** Of the exposition format render() writes. */
  contentType: string;
  logger: Logger;
}): Promise<MetricsEndpoint> {
  const { render, logger, contentType } = options;
  const server = createServer((req, res) => void handle(req, res, render, contentType, logger));
  // A scraper that keeps its connection open must not hold close() up for long.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new Error(`cannot listen for metrics on ${options.host}:${options.port}: ${err.message}`, { cause: err }));
    server.once("error", onError);
    server.listen(options.port, options.host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => logger.warn("metrics endpoint error", { err }));
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

async function handle(req: IncomingMessage, res: ServerResponse, render: () => Promise<string>, contentType: string, logger: Logger): Promise<void> {
  const path = (req.url ?? "/").split("?")[0];
  if (path !== "/metrics") {
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found: metrics are at /metrics\n");
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("use GET\n");
    return;
  }
  try {
    const body = await render();
    res.writeHead(200, { "content-type": contentType, "content-length": Buffer.byteLength(body) });
    res.end(req.method === "HEAD" ? undefined : body);
  } catch (err) {
    logger.error("rendering metrics failed", { err });
    if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
    res.end("rendering metrics failed; see the server log\n");
  }
}

/**
 * The HTTP endpoint Prometheus scrapes: GET /metrics on its own port, plain
 * node:http (no framework for one route). Separate from the gRPC port so it
 * can be exposed to the monitoring network only.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Logger } from "../logger.js";
import { listenHttp, type HttpEndpoint } from "../http/listen.js";

/** Scrape http://<address>/metrics. */
export type MetricsEndpoint = HttpEndpoint;

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
  return listenHttp(server, { host: options.host, port: options.port, what: "metrics", logger });
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

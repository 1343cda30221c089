/**
 * The web UI's HTTP port: the built single-page app (ui/dist, shipped in the server package) and,
 * beside it, the dex.v1 services over the Connect protocol for the app to call
 * (connect-services.ts). Its own port, not the metrics one: the metrics port is meant for the
 * monitoring network only, while the UI is for people (docs/decisions/0029-web-ui.md).
 */
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "../logger.js";
import { listenHttp, type HttpEndpoint } from "./listen.js";
import { peerKey, registerConnectServices, type ConnectHooks, type ServedService } from "./connect-services.js";

/** The UI is at http://<address>/. */
export type UiEndpoint = HttpEndpoint;

/** Where the build (server/ui/build.mjs) writes the app: the same from src/http and dist/http. */
const UI_DIST = fileURLToPath(new URL("../../ui/dist/", import.meta.url));

const STATIC_FILES: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/index.html": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/app.css": { file: "app.css", type: "text/css; charset=utf-8" },
};

// The app loads only its own script and style and talks only to this origin.
const CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

export async function startUiEndpoint(options: {
  host: string;
  port: number;
  services: ServedService[];
  hooks: ConnectHooks;
  logger: Logger;
}): Promise<UiEndpoint> {
  const { logger } = options;
  const handler = connectNodeAdapter({
    routes: (router) => registerConnectServices(router, options.services, options.hooks),
    contextValues: (req) => createContextValues().set(peerKey, `${req.socket.remoteAddress}:${req.socket.remotePort}`),
    fallback: (req, res) => void serveStatic(req as IncomingMessage, res as ServerResponse, logger),
  });
  const server = createServer(handler);
  return listenHttp(server, { host: options.host, port: options.port, what: "the web UI", logger });
}

async function serveStatic(req: IncomingMessage, res: ServerResponse, logger: Logger): Promise<void> {
  const entry = STATIC_FILES[(req.url ?? "/").split("?")[0] ?? "/"];
  if (!entry) {
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found: the dex web UI is at /\n");
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("use GET\n");
    return;
  }
  let body: Buffer;
  try {
    body = await readFile(UI_DIST + entry.file);
  } catch (err) {
    logger.error("the web UI's files are missing; build them with `pnpm --filter @dex/server build:ui`", { err });
    res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("the web UI was not built: run `pnpm --filter @dex/server build:ui`\n");
    return;
  }
  res.writeHead(200, {
    "content-type": entry.type,
    "content-length": body.byteLength,
    "cache-control": "no-cache",
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

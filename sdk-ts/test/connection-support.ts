/**
 * Helpers of the connection tests (environment, reconnects, retries, several servers): a logger
 * that records what a worker says, and a TCP proxy that can swallow a server's answers, so a test
 * can make a call land on the server while its caller never hears back: the case a retry must not
 * turn into a second start or a second delivery.
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import type { Logger } from "../src/common/logger.js";

export interface LogLine {
  level: keyof Logger;
  message: string;
  fields: Record<string, unknown> | undefined;
}

export function recordingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: keyof Logger) => (message: string, fields?: Record<string, unknown>) => void lines.push({ level, message, fields });
  return { logger: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") }, lines };
}

export interface LossyProxy {
  /** "127.0.0.1:port" to give the client. */
  readonly address: string;
  /** From now on the server's bytes are dropped: requests still arrive, answers do not. */
  swallowAnswers(): void;
  /** Cuts every connection (the caller sees UNAVAILABLE) and forwards normally again. */
  cutAndHeal(): void;
  close(): Promise<void>;
}

export async function startLossyProxy(target: string): Promise<LossyProxy> {
  const at = target.lastIndexOf(":");
  const host = target.slice(0, at);
  const port = Number(target.slice(at + 1));
  let swallowing = false;
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  };
  const server: Server = createServer((client) => {
    track(client);
    const backend = connect(port, host);
    track(backend);
    client.pipe(backend);
    backend.on("data", (chunk: Buffer) => {
      if (!swallowing) client.write(chunk);
    });
    const cut = () => {
      client.destroy();
      backend.destroy();
    };
    for (const socket of [client, backend]) {
      socket.on("error", cut);
      socket.on("close", cut);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port: own } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${own}`,
    swallowAnswers() {
      swallowing = true;
    },
    cutAndHeal() {
      for (const socket of sockets) socket.destroy();
      swallowing = false;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

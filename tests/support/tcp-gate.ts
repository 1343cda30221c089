/**
 * A TCP forwarder between workers and a dex server that a test can shut
 * (every connection cut, new ones refused: what a worker sees while the server
 * restarts) and point at another server (a restart on another port).
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export interface TcpGate {
  /** "127.0.0.1:port" to give the workers. */
  readonly address: string;
  /** Cuts every open connection and refuses new ones until open(). */
  shut(): void;
  /** Forwards again, to `target` ("host:port") if given. */
  open(target?: string): void;
  /** Connections refused while shut. */
  readonly refused: number;
  close(): Promise<void>;
}

export async function startTcpGate(target: string): Promise<TcpGate> {
  let upstream = target;
  let isOpen = true;
  let refused = 0;
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  };

  const server: Server = createServer((client) => {
    track(client);
    if (!isOpen) {
      refused++;
      client.destroy();
      return;
    }
    const [host, port] = splitAddress(upstream);
    const backend = connect(port, host);
    track(backend);
    client.pipe(backend);
    backend.pipe(client);
    const cut = () => {
      client.destroy();
      backend.destroy();
    };
    client.on("error", cut);
    backend.on("error", cut);
    client.on("close", cut);
    backend.on("close", cut);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };

  return {
    address: `127.0.0.1:${port}`,
    get refused() {
      return refused;
    },
    shut() {
      isOpen = false;
      for (const socket of sockets) socket.destroy();
    },
    open(next?: string) {
      if (next) upstream = next;
      isOpen = true;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function splitAddress(address: string): [string, number] {
  const at = address.lastIndexOf(":");
  return [address.slice(0, at), Number(address.slice(at + 1))];
}

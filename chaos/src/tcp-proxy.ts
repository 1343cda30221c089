/**
 * A TCP proxy that can partition the network between its two sides (Node
 * `net`, no external tools). Used in front of Postgres (pg-proxy.ts adds
 * wire-protocol faults) and in front of a dex server (one worker cut off).
 *
 * The partition modes are what a real network does, not what a clean
 * shutdown does: no FIN, no RST, the sockets stay open and silent.
 * - blackhole(): nothing is forwarded, either way, on existing connections
 *   and on new ones (which are accepted: the proxy is local, but the path
 *   behind it is gone). Bytes sent meanwhile are held, as TCP holds them for
 *   retransmission, and delivered if the partition heals.
 * - halfOpen(): the far side forgets every connection (its sockets are
 *   destroyed: Postgres sees its clients go and rolls their transactions
 *   back) while the near side's sockets stay open; those are silent forever,
 *   like a TCP connection whose peer lost its state and never answers.
 * - heal(): traffic flows again; held bytes of connections still whole are
 *   delivered, and connections accepted during the partition connect now.
 */
import net from "node:net";

export type Direction = "toUpstream" | "toClient";

/** One proxied connection: the client's socket and the one to the target. */
export class Pair {
  upstream: net.Socket | undefined;
  /** Forwards nothing ever again (its far side is gone), but its client socket stays open. */
  dead = false;
  /** A side closed during a partition: the other side learns of it when the partition heals. */
  clientGone = false;
  upstreamGone = false;
  readonly held: Record<Direction, Buffer[]> = { toUpstream: [], toClient: [] };
  /** For the proxy's user (pg-proxy keeps its wire-protocol state here). */
  state: unknown;

  constructor(readonly id: number, readonly client: net.Socket) {}
}

export interface ProxyStats {
  connections: number;
  /** Connections open when a blackhole began, or accepted during one. */
  blackholed: number;
  /** Connections whose far side was destroyed by halfOpen(). */
  halfOpened: number;
  /** Connections cut on purpose (cut()). */
  cut: number;
}

/**
 * `intercept`, when given, sees each chunk before it is forwarded and decides
 * what goes on by calling `proxy.forward(pair, direction, bytes)` itself.
 */
export class TcpProxy {
  private server: net.Server | undefined;
  private readonly pairs = new Set<Pair>();
  private partitioned = false;
  private nextId = 1;
  readonly stats: ProxyStats = { connections: 0, blackholed: 0, halfOpened: 0, cut: 0 };

  constructor(
    readonly target: { host: string; port: number },
    private readonly intercept?: (pair: Pair, direction: Direction, chunk: Buffer) => void,
  ) {}

  async listen(): Promise<number> {
    const server = (this.server = net.createServer((client) => this.accept(client)));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    return this.port;
  }

  get port(): number {
    return (this.server!.address() as net.AddressInfo).port;
  }

  get openConnections(): number {
    return this.pairs.size;
  }

  blackhole(): void {
    this.partitioned = true;
    this.stats.blackholed += [...this.pairs].filter((p) => !p.dead).length;
  }

  halfOpen(): void {
    this.partitioned = true;
    for (const pair of this.pairs) {
      if (pair.dead) continue;
      pair.dead = true;
      pair.held.toUpstream = [];
      pair.held.toClient = [];
      pair.upstream?.destroy();
      this.stats.halfOpened++;
    }
  }

  heal(): void {
    this.partitioned = false;
    for (const pair of this.pairs) {
      if (pair.dead) continue;
      if (pair.clientGone || pair.upstreamGone) {
        this.drop(pair);
        continue;
      }
      if (!pair.upstream) this.connectUpstream(pair);
      for (const direction of ["toUpstream", "toClient"] as const) {
        const held = pair.held[direction];
        pair.held[direction] = [];
        for (const chunk of held) this.deliver(pair, direction, chunk);
      }
    }
  }

  /** Forwards bytes now, or holds them while partitioned; drops them on a dead connection. */
  forward(pair: Pair, direction: Direction, chunk: Buffer): void {
    if (pair.dead || chunk.length === 0) return;
    if (this.partitioned || (direction === "toUpstream" && !pair.upstream)) pair.held[direction].push(chunk);
    else this.deliver(pair, direction, chunk);
  }

  /** Both sockets destroyed: each side sees its peer vanish. */
  cut(pair: Pair): void {
    if (!this.pairs.has(pair)) return;
    this.stats.cut++;
    this.drop(pair);
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) this.drop(pair);
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(client: net.Socket): void {
    const pair = new Pair(this.nextId++, client);
    this.pairs.add(pair);
    this.stats.connections++;
    client.setNoDelay(true);
    client.on("data", (chunk: Buffer) => this.received(pair, "toUpstream", chunk));
    client.on("error", () => {});
    // The client went away: so does the far side, once the news can get through.
    client.on("close", () => {
      if (this.partitioned && !pair.dead) pair.clientGone = true;
      else this.drop(pair);
    });
    if (this.partitioned) this.stats.blackholed++;
    else this.connectUpstream(pair);
  }

  private connectUpstream(pair: Pair): void {
    const upstream = (pair.upstream = net.connect(this.target));
    upstream.setNoDelay(true);
    upstream.on("data", (chunk: Buffer) => this.received(pair, "toClient", chunk));
    upstream.on("error", () => {});
    // The target closed it: pass that on, once the news can get through.
    upstream.on("close", () => {
      if (pair.dead) return;
      if (this.partitioned) pair.upstreamGone = true;
      else this.drop(pair);
    });
    const held = pair.held.toUpstream;
    pair.held.toUpstream = [];
    for (const chunk of held) this.deliver(pair, "toUpstream", chunk);
  }

  private received(pair: Pair, direction: Direction, chunk: Buffer): void {
    if (pair.dead) return;
    if (this.intercept) this.intercept(pair, direction, chunk);
    else this.forward(pair, direction, chunk);
  }

  private deliver(pair: Pair, direction: Direction, chunk: Buffer): void {
    const socket = direction === "toUpstream" ? pair.upstream : pair.client;
    if (socket && !socket.destroyed) socket.write(chunk);
  }

  private drop(pair: Pair): void {
    pair.dead = true;
    this.pairs.delete(pair);
    pair.client.destroy();
    pair.upstream?.destroy();
  }
}

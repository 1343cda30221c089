/**
 * The connection watchdog: destroys a database connection that has a request
 * outstanding and has heard nothing back for longer than statement_timeout
 * plus a margin.
 *
 * Why: postgres.js has no client-side query timeout, and a connection whose
 * path to Postgres silently stopped carrying packets (a network partition, a
 * firewall or NAT that forgot the flow, a Postgres host that vanished without
 * a RST, a proxy such as PgBouncer whose upstream died) never errors: the
 * query's promise stays pending forever, and so does the gRPC call, the
 * transaction and the pool slot behind it. TCP keepalive does not help when
 * the hop that went silent is past the first one (the local socket to a proxy
 * or load balancer stays healthy), nor for the minutes it takes by default.
 *
 * The rule uses what the server already guarantees: every statement runs
 * under statement_timeout (a connection parameter set by openDatabase), and
 * the wait for a lock counts toward it, so a live backend always answers a
 * request (with rows or with a 57014 cancellation) within statement_timeout.
 * Silence for statement_timeout + margin while an answer is due means the
 * path is dead. The margin covers scheduling delays on a loaded host (ours and
 * Postgres's). A connection with nothing outstanding is never touched: idle
 * pool connections and the LISTEN connection write nothing, so they cannot
 * stall by this rule (a dead idle connection is found on its next use).
 *
 * "An answer is due" is exact on a plaintext connection: the watchdog follows
 * the wire protocol's framing (type byte and length only, bodies are skipped)
 * and counts the requests that each end in exactly one ReadyForQuery (a
 * simple Query, a Sync) against the ReadyForQuery messages read
 * back, plus a Flush, which is answered without one. postgres.js pipelines
 * queries on busy connections, so an answered request does not mean the
 * connection is quiet. Over TLS the bytes are opaque: the watchdog falls back
 * to byte counts sampled each tick (written since the last read), which can
 * miss a request pipelined behind one whose answer had arrived.
 *
 * The startup (up to the first ReadyForQuery) is left to postgres.js's
 * connect_timeout, which openDatabase sets to the same bound: it fails the
 * query waiting for the connection. Were the watchdog to close a connection
 * that is starting up, postgres.js would quietly reconnect with that query
 * still waiting, for as long as the partition lasts.
 *
 * The socket is destroyed without an error, as a closed connection: postgres.js
 * then fails every query on it with CONNECTION_CLOSED (a transient error,
 * UNAVAILABLE to callers, who retry) and opens a new connection for the next
 * one. (With an error, postgres.js 3.4.9 would accept queries on the dying
 * connection between the 'error' and 'close' events and never settle them.)
 * Whatever transaction was open on the Postgres side is rolled back when the
 * path heals and the backend learns its client is gone, or ends by
 * idle_in_transaction_session_timeout.
 */
import net from "node:net";

export interface WatchdogOptions {
  /** Silence with an answer due for longer than this destroys the connection (statement_timeout + margin). */
  stallMs: number;
  /** Told about each connection destroyed, for the log. */
  onStall?: (info: StalledConnection) => void;
}

export interface StalledConnection {
  /** How long the connection had been silent with an answer due. */
  silentMs: number;
  /** Requests outstanding (each due one ReadyForQuery); undefined over TLS, where it cannot be seen. */
  outstanding: number | undefined;
}

/** The part of postgres.js's options its `socket` hook is handed. */
interface PgSocketOptions {
  host: string[];
  port: number[];
  path?: string | false;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;

/**
 * A postgres.js `socket` option that watches every connection it opens. The
 * check runs on one unref'd timer while there are connections, and after the
 * timer, on setImmediate: after the poll phase, so that bytes already in the
 * kernel's buffer are read before silence is judged (a timer delayed by a busy
 * event loop would otherwise fire before the reads that would clear it).
 */
export function connectionWatchdog(options: WatchdogOptions): (pg: PgSocketOptions) => net.Socket {
  const watched = new Set<WatchedSocket>();
  const tickMs = Math.max(50, Math.min(1_000, Math.floor(options.stallMs / 4)));
  let timer: NodeJS.Timeout | undefined;
  let nextHost = 0;

  const check = () => {
    const now = performance.now();
    for (const w of watched) {
      // Over TLS postgres.js takes the socket's listeners (ours with them) when it upgrades.
      if (w.socket.destroyed) {
        watched.delete(w);
        continue;
      }
      const silentMs = w.silentFor(now);
      if (silentMs > options.stallMs) {
        watched.delete(w);
        options.onStall?.({ silentMs: Math.round(silentMs), outstanding: w.framed ? w.outstanding : undefined });
        w.socket.destroy();
      }
    }
  };
  const arm = () => {
    if (timer || watched.size === 0) return;
    timer = setInterval(() => {
      if (watched.size === 0) {
        clearInterval(timer);
        timer = undefined;
        return;
      }
      setImmediate(check);
    }, tickMs);
    timer.unref();
  };

  return (pg) => {
    // What postgres.js does itself without the hook: a unix socket path, else the hosts in turn.
    const i = nextHost++ % Math.max(1, pg.host.length);
    const socket = pg.path ? net.connect(pg.path) : net.connect({ host: pg.host[i]!, port: pg.port[i] ?? pg.port[0]! });
    // postgres.js reads these for TLS's server name and for its error messages.
    Object.assign(socket, { host: pg.path || pg.host[i], port: pg.port[i] ?? pg.port[0] });
    const w = new WatchedSocket(socket, options.stallMs);
    watched.add(w);
    socket.once("close", () => watched.delete(w));
    arm();
    return socket;
  };
}

/** One connection: what is due on it, and since when nothing has been heard. */
class WatchedSocket {
  /** False once TLS (or GSS encryption) starts: the bytes can no longer be followed. */
  framed = true;
  /** Requests each due one ReadyForQuery ('Z'): Query ('Q'), Sync ('S'). */
  outstanding = 0;
  /** Until the startup's ReadyForQuery, connect_timeout is in charge, not the watchdog. */
  private starting = true;
  private readonly createdAt = performance.now();
  /** A Flush ('H') was sent: something is due, though no ReadyForQuery. Cleared by any answer. */
  private flushed = false;
  /** When something last became due while nothing was (ms, performance.now()). */
  private dueSince = 0;
  /** When bytes were last read. */
  private heardAt = performance.now();
  private readonly front = new Framer(true);
  private readonly back = new Framer(false);
  /** Waiting for the single unframed byte that answers an SSL/GSS request. */
  private encryptionAnswerDue = false;
  // Byte counts at the last tick: all that can be seen over TLS.
  private bytesRead = 0;
  private bytesWritten = 0;
  private opaqueDue = false;

  constructor(
    readonly socket: net.Socket,
    private readonly stallMs: number,
  ) {
    const write = socket.write.bind(socket) as (chunk: unknown, ...rest: unknown[]) => boolean;
    // postgres.js writes Buffers; over TLS it writes to the TLS socket, and this is not called.
    socket.write = ((chunk: unknown, ...rest: unknown[]) => {
      if (this.framed && Buffer.isBuffer(chunk)) this.sent(chunk);
      return write(chunk, ...rest);
    }) as net.Socket["write"];
    // Registered before postgres.js's own listener, so an SSL answer is seen before it takes over the socket.
    socket.on("data", (chunk: Buffer) => this.received(chunk));
  }

  get due(): boolean {
    if (this.framed) return !this.starting && (this.outstanding > 0 || this.flushed);
    // Over TLS the startup cannot be seen: it is within connect_timeout (the same bound) of the connect.
    return this.opaqueDue && performance.now() - this.createdAt > this.stallMs;
  }

  /** How long an answer has been due with nothing heard; 0 if none is due. */
  silentFor(now: number): number {
    if (!this.framed) this.sampleCounts(now);
    if (!this.due) return 0;
    return now - Math.max(this.heardAt, this.dueSince);
  }

  private becomeDue(wasDue: boolean): void {
    if (!wasDue) this.dueSince = performance.now();
  }

  private sent(chunk: Buffer): void {
    const wasDue = this.due;
    this.front.push(chunk, (type, code) => {
      if (type === undefined) {
        // An untyped first message: the startup, or a request to encrypt first, or a cancel.
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          this.encryptionAnswerDue = true;
          this.front.expectStartup(); // declined ('N'): the startup comes next, in the clear
        } else if (code === CANCEL_REQUEST) {
          this.starting = false; // answered by a close, nothing else: never due
        }
      } else if (type === 0x51 /* Q */ || type === 0x53 /* S */) {
        this.outstanding++;
      } else if (type === 0x48 /* H */) {
        this.flushed = true;
      }
    });
    this.becomeDue(wasDue);
  }

  private received(chunk: Buffer): void {
    this.heardAt = performance.now();
    this.flushed = false;
    if (!this.framed) return;
    if (this.encryptionAnswerDue) {
      this.encryptionAnswerDue = false;
      if (chunk[0] === 0x53 /* S */ || chunk[0] === 0x47 /* G */) {
        this.framed = false; // everything from here on is encrypted
        return;
      }
      chunk = chunk.subarray(1);
    }
    this.back.push(chunk, (type) => {
      if (type !== 0x5a /* Z */) return;
      if (this.starting) this.starting = false;
      else if (this.outstanding > 0) this.outstanding--;
    });
  }

  private sampleCounts(now: number): void {
    const read = this.socket.bytesRead;
    const written = this.socket.bytesWritten;
    if (read !== this.bytesRead) {
      this.heardAt = now;
      // Written in the same tick as the read: cannot tell which came first; assume answered.
      this.opaqueDue = false;
    } else if (written !== this.bytesWritten && !this.opaqueDue) {
      this.opaqueDue = true;
      this.dueSince = now;
    }
    this.bytesRead = read;
    this.bytesWritten = written;
  }
}

/**
 * Follows message boundaries of one direction of the protocol without
 * buffering bodies: a typed message is a type byte and an int32 length that
 * counts itself; the first frontend message has no type byte (length, then an
 * int32 protocol or request code).
 */
class Framer {
  private readonly header = Buffer.alloc(8);
  private have = 0;
  private skip = 0;
  private untyped: boolean;

  constructor(startsUntyped: boolean) {
    this.untyped = startsUntyped;
  }

  expectStartup(): void {
    this.untyped = true;
  }

  push(chunk: Buffer, onMessage: (type: number | undefined, code: number) => void): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const headerLength = this.untyped ? 8 : 5;
      const n = Math.min(headerLength - this.have, chunk.length - i);
      chunk.copy(this.header, this.have, i, i + n);
      this.have += n;
      i += n;
      if (this.have < headerLength) return;
      this.have = 0;
      if (this.untyped) {
        this.untyped = false;
        this.skip = Math.max(0, this.header.readUInt32BE(0) - 8);
        onMessage(undefined, this.header.readUInt32BE(4));
      } else {
        this.skip = Math.max(0, this.header.readUInt32BE(1) - 4);
        onMessage(this.header[0], 0);
      }
    }
  }
}

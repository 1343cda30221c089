/**
 * A TCP proxy between the dex server and Postgres (tcp-proxy.ts) that also
 * understands the framing of the Postgres wire protocol, to inject faults at
 * statement boundaries:
 * - fail a statement: when its Bind (extended protocol) or Query (simple
 *   protocol) comes from the server, both sockets are cut before it is
 *   forwarded. Postgres sees its client vanish and rolls back any open
 *   transaction; the server sees the connection close.
 * - commit, then error: a COMMIT is forwarded, Postgres's whole answer to it
 *   (up to and including its ReadyForQuery) is held and dropped, and both
 *   sockets are cut. The transaction is committed; its caller sees a
 *   connection error, and cannot know the commit happened.
 *
 * Framing: the client's first message has no type byte (int32 length, int32
 * protocol or request code); every later message, both ways, is a type byte
 * and an int32 length that counts itself. postgres.js sends every statement
 * over the extended protocol (Parse 'P' carries the SQL and a statement name,
 * Bind 'B' names the statement, then Describe/Execute/Sync), and a prepared
 * statement is parsed once per connection, so the proxy remembers each
 * connection's statement names. postgres.js commits with a prepared `commit`
 * (sql`commit`), seen here as Parse "commit" once, then Binds of its name;
 * run with CHAOS_PG_PROXY_TRACE=1 to print each statement as it passes.
 * Each Sync, Query and the startup is answered by exactly one ReadyForQuery
 * ('Z'), which is how the answer to the COMMIT is found in the stream.
 */
import type { Rng } from "./rng.js";
import { TcpProxy, type Direction, type Pair } from "./tcp-proxy.js";

export interface FaultRates {
  /** Share of statements whose connection is cut before the statement is sent. */
  statementFailRate: number;
  /** Share of COMMITs that commit and whose answer is dropped and connection cut. */
  commitErrorRate: number;
}

export interface FaultCounts {
  statements: number;
  commits: number;
  /** Statements cut before they reached Postgres, by first word of their SQL. */
  failed: Map<string, number>;
  /** COMMITs Postgres answered COMMIT, whose answer the caller never saw. */
  committedThenErrored: number;
  /** COMMITs whose answer was dropped but that Postgres had rolled back (the transaction had failed). */
  rolledBackThenErrored: number;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const trace = process.env.CHAOS_PG_PROXY_TRACE === "1";

/** What the proxy knows of one connection's protocol state. */
class Conn {
  /** After an accepted SSL/GSS request the bytes are encrypted: passed through untouched. */
  opaque = false;
  readonly front = new Splitter(true);
  readonly back = new Splitter(false);
  /** The single unframed byte answering an SSL/GSS request is due from Postgres. */
  encryptionAnswerDue = false;
  readonly statements = new Map<string, string>();
  /** Messages sent that each get one ReadyForQuery: the startup, Query, Sync. */
  syncs = 0;
  /** ReadyForQuery messages seen from Postgres. */
  readies = 0;
  /** The ReadyForQuery number that answers a COMMIT chosen to error after committing. */
  faultyCommitSync: number | undefined;
  /** The command tag of the last CommandComplete held back for that COMMIT. */
  heldTag = "";
}

export class PgProxy {
  readonly tcp: TcpProxy;
  /** Faults are injected only while this is set. */
  faults: (FaultRates & { rng: Rng }) | undefined;
  readonly counts: FaultCounts = { statements: 0, commits: 0, failed: new Map(), committedThenErrored: 0, rolledBackThenErrored: 0 };

  /** A proxy, listening, in front of the Postgres that `databaseUrl` names. */
  static async inFrontOf(databaseUrl: string): Promise<PgProxy> {
    const url = new URL(databaseUrl);
    const proxy = new PgProxy({ host: url.hostname || "127.0.0.1", port: Number(url.port || 5432) });
    await proxy.listen();
    return proxy;
  }

  constructor(target: { host: string; port: number }) {
    this.tcp = new TcpProxy(target, (pair, direction, chunk) => this.inspect(pair, direction, chunk));
  }

  async listen(): Promise<void> {
    await this.tcp.listen();
  }

  /** The same database URL, through the proxy. */
  url(databaseUrl: string): string {
    const url = new URL(databaseUrl);
    url.hostname = "127.0.0.1";
    url.port = String(this.tcp.port);
    return url.toString();
  }

  get failedStatements(): number {
    return [...this.counts.failed.values()].reduce((a, b) => a + b, 0);
  }

  close(): Promise<void> {
    return this.tcp.close();
  }

  private inspect(pair: Pair, direction: Direction, chunk: Buffer): void {
    const conn = (pair.state ??= new Conn()) as Conn;
    if (conn.opaque) return this.tcp.forward(pair, direction, chunk);
    if (direction === "toClient" && conn.encryptionAnswerDue) {
      conn.encryptionAnswerDue = false;
      if (chunk[0] === 0x53 /* S */ || chunk[0] === 0x47 /* G */) {
        conn.opaque = true;
        return this.tcp.forward(pair, direction, chunk);
      }
      this.tcp.forward(pair, direction, chunk.subarray(0, 1));
      chunk = chunk.subarray(1);
    }
    const splitter = direction === "toUpstream" ? conn.front : conn.back;
    for (const message of splitter.push(chunk)) {
      const go = direction === "toUpstream" ? this.fromServer(pair, conn, message) : this.fromPostgres(pair, conn, message);
      if (!go) return; // the pair was cut: nothing more of it goes anywhere
    }
  }

  /** One message from the dex server; false once the pair is cut. */
  private fromServer(pair: Pair, conn: Conn, m: Message): boolean {
    if (m.type === undefined) {
      const code = m.body.readUInt32BE(0);
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        conn.encryptionAnswerDue = true;
        conn.front.expectStartup(); // declined: the startup follows, in the clear
      } else {
        conn.syncs++; // the startup: answered by a ReadyForQuery once authenticated
      }
    } else if (m.type === "P") {
      const name = cstring(m.body, 0);
      conn.statements.set(name.text, cstring(m.body, name.end).text);
    } else if (m.type === "B") {
      const portal = cstring(m.body, 0);
      const sql = conn.statements.get(cstring(m.body, portal.end).text) ?? "";
      if (!this.statement(pair, conn, sql)) return false;
    } else if (m.type === "Q") {
      if (!this.statement(pair, conn, cstring(m.body, 0).text)) return false;
      conn.syncs++;
    } else if (m.type === "S") {
      conn.syncs++;
    }
    this.tcp.forward(pair, "toUpstream", m.raw);
    return true;
  }

  /** A statement about to be sent: maybe cut the connection instead, maybe mark a COMMIT to error. */
  private statement(pair: Pair, conn: Conn, sql: string): boolean {
    const word = sql.trim().split(/\s+/, 1)[0]!.toLowerCase() || "?";
    if (trace) process.stdout.write(`[pg-proxy ${pair.id}] ${sql.replace(/\s+/g, " ").slice(0, 120)}\n`);
    this.counts.statements++;
    if (word === "commit") this.counts.commits++;
    if (!this.faults) return true;
    if (this.faults.rng.chance(this.faults.statementFailRate)) {
      this.counts.failed.set(word, (this.counts.failed.get(word) ?? 0) + 1);
      this.tcp.cut(pair);
      return false;
    }
    // Its answer is the ReadyForQuery of the next Sync (or of this Query).
    if (word === "commit" && conn.faultyCommitSync === undefined && this.faults.rng.chance(this.faults.commitErrorRate)) {
      conn.faultyCommitSync = conn.syncs + 1;
    }
    return true;
  }

  /** One message from Postgres; false once the pair is cut. */
  private fromPostgres(pair: Pair, conn: Conn, m: Message): boolean {
    const target = conn.faultyCommitSync;
    // Everything from the COMMIT's batch on is held: its ParseComplete, BindComplete, CommandComplete, ReadyForQuery.
    if (target !== undefined && conn.readies >= target - 1) {
      if (m.type === "C") conn.heldTag = cstring(m.body, 0).text;
      if (m.type === "Z" && ++conn.readies === target) {
        if (conn.heldTag === "COMMIT") this.counts.committedThenErrored++;
        else this.counts.rolledBackThenErrored++;
        this.tcp.cut(pair);
        return false;
      }
      return true;
    }
    if (m.type === "Z") conn.readies++;
    this.tcp.forward(pair, "toClient", m.raw);
    return true;
  }
}

interface Message {
  /** Undefined for the client's first (untyped) message. */
  type: string | undefined;
  /** The bytes after the length. */
  body: Buffer;
  /** The whole message, as received. */
  raw: Buffer;
}

/** Splits one direction's byte stream into whole messages (bodies buffered: this is a test tool). */
class Splitter {
  private pending: Buffer = Buffer.alloc(0);
  constructor(private untyped: boolean) {}

  expectStartup(): void {
    this.untyped = true;
  }

  push(chunk: Buffer): Message[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const out: Message[] = [];
    for (;;) {
      const head = this.untyped ? 0 : 1;
      if (this.pending.length < head + 4) break;
      const total = head + this.pending.readUInt32BE(head);
      if (this.pending.length < total) break;
      const raw = this.pending.subarray(0, total);
      out.push({ type: this.untyped ? undefined : String.fromCharCode(raw[0]!), body: raw.subarray(head + 4), raw });
      this.untyped = false;
      this.pending = this.pending.subarray(total);
    }
    return out;
  }
}

function cstring(buffer: Buffer, start: number): { text: string; end: number } {
  const zero = buffer.indexOf(0, start);
  const end = zero === -1 ? buffer.length : zero;
  return { text: buffer.toString("utf8", start, end), end: end + 1 };
}

/**
 * A transaction's BEGIN pipelined onto a busy pool connection whose socket
 * reports backpressure (socket.write() returned false: its buffer is full, as
 * under load) must still reserve that connection for the transaction.
 *
 * postgres.js 3.4.9 reserved it only when the write reported no backpressure.
 * Otherwise the BEGIN failed with UNSAFE_TRANSACTION, the session stayed in
 * the open transaction, and the pool went on sending other statements into it:
 * their writes were never committed, and their row locks were held until
 * idle_in_transaction_session_timeout (60 s) ended the session. `pnpm bench`
 * saw this as an INTERNAL error on CompleteActivityTask followed by a stall
 * of about a minute. patches/postgres@3.4.9.patch reserves the connection
 * whatever the socket says; this test fails without that hunk.
 *
 * The socket is real (a TCP connection to the real Postgres); it only reports
 * a full buffer on every write, which a loaded server's sockets do at times.
 */
import { connect, type Socket } from "node:net";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "@dex/testing";

describe("a transaction begun on a busy connection under backpressure", () => {
  let db: TestDatabase;
  let admin: postgres.Sql;
  beforeAll(async () => {
    db = await createTestDatabase();
    admin = postgres(db.url, { max: 1, onnotice: () => {} });
    await admin`create table pipelined_begin (x int)`;
  });
  afterAll(async () => {
    await admin.end();
    await db.drop();
  });

  it("keeps the connection to itself, for every size of the statement pipelined ahead of it", async () => {
    const url = new URL(db.url);
    // Two connections: postgres.js only refuses a BEGIN on an unreserved connection when the pool has more than one.
    const sql = postgres(db.url, {
      max: 2,
      onnotice: () => {},
      // postgres.js takes a socket factory; its types leave it out.
      ...({
        socket: () =>
          new Promise<Socket>((resolve, reject) => {
            const socket = connect(Number(url.port), url.hostname);
            const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
            socket.write = ((...args: unknown[]) => {
              write(...args);
              return false; // "buffer full": the data is still sent
            }) as Socket["write"];
            socket.once("connect", () => resolve(socket));
            socket.once("error", reject);
          }),
      } as object),
    });
    try {
      await Promise.all([sql`select pg_sleep(0.05)`, sql`select pg_sleep(0.05)`]); // both connections open
      // postgres.js writes a connection's pipelined statements at once (and so learns of
      // backpressure) when they reach 1 KiB. Statements of a range of sizes just under that ahead
      // of the BEGIN on the same connection make the BEGIN the one that crosses it.
      const sizes: number[] = [];
      for (let size = 940; size < 1000; size += 2) sizes.push(size);
      for (const size of sizes) {
        // One padded statement on each connection, sent now (execute(); queries are otherwise sent
        // when awaited), so the BEGIN finds no idle connection and goes behind one of them.
        const padded = () => sql.unsafe(`select '${"x".repeat(size)}' as padding`).execute();
        const ahead = Promise.all([padded(), padded()]);
        const transaction = sql.begin(async (tx) => {
          await tx`insert into pipelined_begin values (${size})`;
          return (await tx<{ n: number }[]>`select count(*)::int as n from pipelined_begin where x = ${size}`)[0]!.n;
        });
        // And a statement queued behind the transaction: it must not run inside it.
        const behind = sql`select txid_current_if_assigned() as txid`;
        const [, seen, after] = await Promise.all([ahead, transaction, behind]);
        expect(seen).toBe(1);
        expect(after[0]!.txid).toBeNull(); // outside any transaction that wrote
      }
      // Every transaction committed: another session sees all the rows, and no session is
      // left idle in a transaction.
      expect((await admin<{ n: number }[]>`select count(*)::int as n from pipelined_begin`)[0]!.n).toBe(sizes.length);
      const open = await admin`select 1 from pg_stat_activity where datname = current_database() and state = 'idle in transaction'`;
      expect(open.length).toBe(0);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });
});

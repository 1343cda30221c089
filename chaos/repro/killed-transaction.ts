/**
 * Reproduction of what postgres.js (3.4.9) does when the connection under a
 * `sql.begin` transaction is killed (idle_in_transaction_session_timeout,
 * pg_terminate_backend, a Postgres restart) while the callback still runs.
 * Found through the torn runs of the `sigterm` scenario (see completion-burst.ts).
 *
 *  1. `begin` rejects, but the callback goes on. Its later `tx` queries run on
 *     the pool's reconnected connection **in autocommit**: each one commits
 *     on its own. A server transaction that was half done (history appended,
 *     run row not yet updated) is left torn.
 *  2. Queries pipelined on the transaction (Promise.all of several `tx`
 *     queries) while its connection dies crash the process with an uncaught
 *     `TypeError: Cannot read properties of null (reading 'write')`
 *     (connection.js nextWrite). The `sigterm` scenario saw a `dex server`
 *     exit 1 this way.
 *
 *   node --import tsx chaos/repro/killed-transaction.ts          # case 1
 *   node --import tsx chaos/repro/killed-transaction.ts --crash  # case 2 (reports the uncaught exception)
 */
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { startEmbeddedPostgres } from "@dex/server/dev/embedded-postgres";

const pg = await startEmbeddedPostgres({ dataDir: join(tmpdir(), `dex-repro-tx-${randomBytes(3).toString("hex")}`), ephemeral: true });
const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
await admin`create table t (x int)`;

if (process.argv.includes("--crash")) {
  // What would end the process: report it, and stop this script's Postgres before exiting.
  process.on("uncaughtException", (err) => {
    console.log(`uncaught exception (a dex server would exit 1 here): ${err.stack}`);
    void pg.stop().finally(() => process.exit(1));
  });
  const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
  await sql
    .begin(async (tx) => {
      const [row] = await tx<{ pid: number }[]>`select pg_backend_pid() as pid`;
      const killer = admin`select pg_sleep(0.1), pg_terminate_backend(${row!.pid})`;
      await new Promise((r) => setTimeout(r, 500));
      await killer;
      await Promise.all([tx`insert into t values (11)`, tx`insert into t values (12)`]);
    })
    .catch((err: Error) => console.log("begin rejected:", err.message));
  await new Promise((r) => setTimeout(r, 2_000));
  console.log("no crash this time");
} else {
  // Case 1, as in the completion path: while its transaction is open, the callback waits for
  // another pool connection (the pool has one); Postgres kills the idle transaction after 1 s.
  const sql = postgres(pg.url, { max: 1, onnotice: () => {}, connection: { idle_in_transaction_session_timeout: 1000 } });
  await sql
    .begin(async (tx) => {
      await tx`insert into t values (1)`;
      await sql`select 1`; // waits for the connection this transaction holds
      await Promise.all([tx`insert into t values (2)`, tx`insert into t values (3)`]);
      throw new Error("the callback fails: everything should roll back");
    })
    .catch((err: Error) => console.log("begin rejected:", err.message));
  await new Promise((r) => setTimeout(r, 1_000));
  console.log("rows committed (should be none):", (await admin<{ x: number }[]>`select x from t order by x`).map((r) => r.x));
  await sql.end();
}
await admin.end();
await pg.stop();

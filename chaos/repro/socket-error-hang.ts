/**
 * Reproduction: in postgres.js (3.4.9, also with patches/postgres@3.4.9.patch
 * as of this writing), when a connection's socket fails with an *error*
 * (ECONNRESET from a reset peer, ETIMEDOUT from TCP keepalive, EPIPE) while a
 * query runs, that query is rejected, but the connection is never used or
 * reopened again: every later query queued on it waits forever. A socket that
 * closes *without* an error (a FIN) is handled: the next query reconnects.
 * Found while writing the connection watchdog (server/src/store/
 * connection-watchdog.ts), which for this reason closes a dead connection
 * without an error.
 *
 * The script puts a TCP proxy between postgres.js (a pool of one) and
 * Postgres, and resets (RST) the connection while a query runs.
 *
 *   node --import tsx chaos/repro/socket-error-hang.ts          # RST: ECONNRESET, then the second query hangs
 *   node --import tsx chaos/repro/socket-error-hang.ts --close  # FIN: CONNECTION_CLOSED, the second query is answered
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { startEmbeddedPostgres } from "@dex/server/dev/embedded-postgres";

const pg = await startEmbeddedPostgres({ dataDir: join(tmpdir(), `dex-repro-sock-${randomBytes(3).toString("hex")}`), ephemeral: true });
const target = new URL(pg.url);
const clients: net.Socket[] = [];
const proxy = net.createServer((client) => {
  clients.push(client);
  const upstream = net.connect({ host: target.hostname, port: Number(target.port) });
  for (const s of [client, upstream]) s.on("error", () => {});
  client.pipe(upstream).pipe(client);
});
await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
const url = new URL(pg.url);
url.port = String((proxy.address() as net.AddressInfo).port);
const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
try {
  await sql`select 1`;
  const reset = !process.argv.includes("--close");
  const first = sql`select pg_sleep(2)`.then(() => "answered", (err: { code?: string }) => `rejected ${err.code}`);
  // Cut the connection while the query runs: a reset (RST), or a plain close (FIN).
  setTimeout(() => (reset ? clients[0]!.resetAndDestroy() : clients[0]!.end()), 200);
  console.log(`connection ${reset ? "reset (RST)" : "closed (FIN)"}; first query: ${await first}`);
  const second = sql`select 1`.then(() => "answered", (err: { code?: string }) => `rejected ${err.code}`);
  const outcome = await Promise.race([second, new Promise<string>((resolve) => setTimeout(() => resolve("NO ANSWER after 5 s (hangs)"), 5_000))]);
  console.log(`second query: ${outcome}; connections opened: ${clients.length}`);
} finally {
  proxy.close();
  await pg.stop();
  process.exit(0);
}

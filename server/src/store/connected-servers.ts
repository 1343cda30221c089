/**
 * Which dex servers are connected to this database, and of which release (decision 0033): what
 * `dex migrate` needs to know before it applies a migration that servers of an older release cannot
 * run on. A server says its release in the application_name of every connection it opens
 * (`dex-server-dispatch level=2 v=16 id=1a2b3c4d5e6f release=0.2`), and pg_stat_activity shows
 * application_name to every role, not just to superusers or the server's own role. No table is
 * needed (a server that crashes leaves no row to expire), and the answer is the truth of the moment
 * rather than a heartbeat's. Its limits: a server that lost every connection is not seen, and a
 * transaction-mode pooler between servers and Postgres shows its own connections' names.
 */
import type { Queryable } from "./db.js";
import { RELEASE_LABEL_MAX } from "./migration-releases.js";

/**
 * The release level given to a connected server that does not say its release: builds before
 * decision 0033 (release 0.2 is the first whose servers say it), so at most release 0.1. It orders
 * them first; `dex migrate` does not place them in the window by it: such a build knows no window
 * and refuses any migration it does not know, so any pending migration strands it (older-servers.ts).
 */
export const UNANNOUNCED_SERVER_LEVEL = 1;

/** Postgres truncates application_name to NAMEDATALEN - 1 bytes. */
const APPLICATION_NAME_MAX = 63;

/** What a server says of its build: its release and level, and the newest migration it knows. */
export interface AnnouncedBuild {
  release: string;
  releaseLevel: number;
  /** The newest migration version the build knows: a pending migration of its release or older past it would be a gap it refuses. */
  knownVersion: number;
}

/**
 * The application_name of a server's pool: the pool's name, the level, the newest migration it
 * knows (`v`), the server's id, then the release label.
 */
export function serverApplicationName(pool: string, build: AnnouncedBuild, serverId: string): string {
  // What `dex migrate` compares first, the label (for people) last: if Postgres cuts the name at 63
  // bytes, only the label is cut (the longest pool, level 99 and v=9999 end the id at byte 52), and
  // the main pool, "dex-server", keeps a label of RELEASE_LABEL_MAX whole (connectedServers keeps the
  // longest label a server's pools show).
  const label = build.release.slice(0, RELEASE_LABEL_MAX);
  return `${pool} level=${build.releaseLevel} v=${build.knownVersion} id=${serverId} release=${label}`.slice(0, APPLICATION_NAME_MAX);
}

/** One dex server seen through its connections. */
export interface ConnectedServer {
  /** The id the server logs as `server`; for servers that do not say their release, `at <client address>`. */
  id: string;
  /** Its release, or undefined for a server that does not say it (older than 0.2). */
  release: string | undefined;
  /** Its release level; UNANNOUNCED_SERVER_LEVEL when it does not say. */
  releaseLevel: number;
  /** The newest migration version it knows; undefined for a server that does not say its release. */
  knownVersion: number | undefined;
  /** How many connections it holds to this database. */
  connections: number;
}

const POOL = /^dex-server(?:-[a-z]+)?$/;
const NUMBER = /^\d+$/;
const SERVER_ID = /^[0-9a-f]{12}$/;

/**
 * The pool and the `key=value` fields of a dex server's application_name, read tolerantly: the
 * fields end at the first word that is not one, because a pooler may append to the name (pgbouncer's
 * application_name_add_host adds " - host:port") and Postgres then cuts the whole at 63 bytes, so
 * the tail may be cut anywhere. Undefined for a name no dex server uses.
 */
export function parseServerApplicationName(name: string): { pool: string; fields: Map<string, string> } | undefined {
  const [pool, ...words] = name.split(" ");
  if (!POOL.test(pool!)) return undefined;
  const fields = new Map<string, string>();
  for (const word of words) {
    const eq = word.indexOf("=");
    if (eq <= 0) break;
    fields.set(word.slice(0, eq), word.slice(eq + 1));
  }
  return { pool: pool!, fields };
}

/**
 * The dex servers connected to the current database, oldest release first. Servers that do not
 * announce a release cannot be told apart from each other: each of their client addresses counts as one
 * (client_addr is null over a Unix socket, and in another role's sessions without pg_read_all_stats).
 * A name with a dex server's pool but without a whole level, v and id counts as not announced: the
 * guard then refuses any migration beside it, the safe side.
 */
export async function connectedServers(sql: Queryable): Promise<ConnectedServer[]> {
  const rows = await sql<{ name: string; client: string; connections: number }[]>`
    select application_name as name, coalesce(host(client_addr), 'an address not shown') as client, count(*)::int as connections
    from pg_stat_activity
    where datname = current_database() and pid <> pg_backend_pid() and application_name like 'dex-server%'
    group by 1, 2`;
  const servers = new Map<string, ConnectedServer>();
  for (const row of rows) {
    const parsed = parseServerApplicationName(row.name);
    if (!parsed) continue; // not a name a dex server uses
    const level = parsed.fields.get("level") ?? "";
    const known = parsed.fields.get("v") ?? "";
    const id = parsed.fields.get("id") ?? "";
    let key: string;
    let server: ConnectedServer;
    if (NUMBER.test(level) && NUMBER.test(known) && SERVER_ID.test(id)) {
      // Level and id together: the level is what the guard compares, the id what tells servers apart.
      key = `level ${level} id ${id}`;
      server = { id, release: parsed.fields.get("release") ?? "", releaseLevel: Number(level), knownVersion: Number(known), connections: row.connections };
    } else {
      key = `client ${row.client}`;
      server = { id: `at ${row.client}`, release: undefined, releaseLevel: UNANNOUNCED_SERVER_LEVEL, knownVersion: undefined, connections: row.connections };
    }
    const seen = servers.get(key);
    if (!seen) servers.set(key, server);
    else {
      seen.connections += server.connections;
      // A pool with a longer name may carry the release label cut short; the longest seen is the whole one.
      if ((server.release?.length ?? 0) > (seen.release?.length ?? 0)) seen.release = server.release;
    }
  }
  return [...servers.values()].sort((a, b) => a.releaseLevel - b.releaseLevel || a.id.localeCompare(b.id));
}

/** "server 1a2b3c4d5e6f of release 0.2 (5 connection(s))", or what is known of a server that does not say its release. */
export function describeServer(server: ConnectedServer): string {
  return server.release === undefined
    ? `server(s) ${server.id} of a release before 0.2 (they do not say which; ${server.connections} connection(s))`
    : `server ${server.id} of release ${server.release || `level ${server.releaseLevel}`} (${server.connections} connection(s))`;
}

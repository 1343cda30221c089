/**
 * The bench's child processes (dex server, worker processes, the DBOS and
 * pg-boss runners): spawned with `node --import tsx`, output to a log file
 * each, ready when a line matches, killed by pid at the end. Modelled on
 * chaos/src/processes.ts.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<number | null>;
  tail(): string;
  /** Sends an IPC message and resolves with the child's next reply (processes spawned with `ipc`). */
  request<T>(message: unknown, timeoutMs?: number): Promise<T>;
  /** Resolves with the first IPC message for which `match` is true. */
  message<T>(match: (m: T) => boolean, timeoutMs: number): Promise<T>;
}

export class ProcessGroup {
  private readonly live = new Set<ChildProcess>();
  private readonly logs: WriteStream[] = [];

  constructor(readonly logDir: string) {}

  spawn(name: string, nodeArgs: string[], options: { env?: Record<string, string>; ready: RegExp; timeoutMs?: number; ipc?: boolean }): Promise<Proc> {
    const log = createWriteStream(join(this.logDir, `${name}.log`), { flags: "a" });
    this.logs.push(log);
    // stdin stays a pipe: our worker processes exit when it closes, so they never outlive a killed bench.
    const stdio = options.ipc ? (["pipe", "pipe", "pipe", "ipc"] as const) : (["pipe", "pipe", "pipe"] as const);
    const child = spawn(process.execPath, ["--import", "tsx", ...nodeArgs], { cwd: repoRoot, env: { ...process.env, ...options.env }, stdio: [...stdio] });
    this.live.add(child);
    let tail = "";
    const onData = (chunk: Buffer) => {
      log.write(chunk);
      tail = (tail + chunk.toString()).slice(-8000);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => (this.live.delete(child), resolve(code))));
    const message = <T>(match: (m: T) => boolean, timeoutMs: number) =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => (child.off("message", on), reject(new Error(`${name}: no reply within ${timeoutMs} ms:\n${tail}`))), timeoutMs);
        const on = (m: unknown) => {
          if (!match(m as T)) return;
          clearTimeout(timer);
          child.off("message", on);
          resolve(m as T);
        };
        child.on("message", on);
      });
    const proc: Proc = {
      name,
      child,
      pid: child.pid!,
      exited,
      tail: () => tail,
      message,
      request: <T>(m: unknown, timeoutMs = 10_000) => {
        const reply = message<T>(() => true, timeoutMs);
        child.send(m as object);
        return reply;
      },
    };
    const timeoutMs = options.timeoutMs ?? 60_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`${name} was not ready within ${timeoutMs} ms:\n${tail}`));
      }, timeoutMs);
      const check = () => {
        if (!options.ready.test(tail)) return;
        clearTimeout(timer);
        child.stdout!.off("data", check);
        child.stderr!.off("data", check);
        resolve(proc);
      };
      child.stdout!.on("data", check);
      child.stderr!.on("data", check);
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (code ${code}) before it was ready:\n${tail}`));
      });
    });
  }

  /** Stops one process: SIGTERM, SIGKILL after `graceMs`. */
  async stop(proc: Proc, graceMs = 10_000): Promise<void> {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
    const force = setTimeout(() => proc.child.kill("SIGKILL"), graceMs);
    proc.child.kill("SIGTERM");
    await proc.exited;
    clearTimeout(force);
  }

  /** Ends everything still running (SIGTERM, then SIGKILL), and closes the logs. */
  async close(graceMs = 10_000): Promise<void> {
    await Promise.all(
      [...this.live].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const force = setTimeout(() => child.kill("SIGKILL"), graceMs);
            child.once("exit", () => (clearTimeout(force), resolve()));
            child.kill("SIGTERM");
          }),
      ),
    );
    await Promise.all(this.logs.map((log) => new Promise<void>((resolve) => log.end(resolve))));
    this.logs.length = 0;
  }
}

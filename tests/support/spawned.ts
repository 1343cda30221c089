/**
 * Long-running child processes for end-to-end tests (`dex dev`, worker processes): started and
 * considered ready when their output matches a pattern, stopped with SIGTERM.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

export interface Started {
  readonly child: ChildProcess;
  /** Everything the process wrote (stdout and stderr), for assertions and failure messages. */
  output(): string;
  readonly exited: Promise<number | null>;
}

export interface StartOptions {
  /** Program to run; default: this Node. */
  command?: string;
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** How long to wait for `ready`; long, because it bounds a hang, not a speed. Default 120 s. */
  timeoutMs?: number;
}

/** Spawns `command args` and resolves once its output matches `ready`; rejects if it exits first. */
export function startProcess(args: string[], ready: RegExp, options: StartOptions = {}): Promise<Started> {
  return new Promise((resolve, reject) => {
    const child = spawn(options.command ?? process.execPath, args, {
      cwd: options.cwd ?? repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const exited = new Promise<number | null>((r) => child.on("exit", r));
    const timeoutMs = options.timeoutMs ?? 120_000;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`not ready after ${timeoutMs / 1000} s: ${args.join(" ")}\n${output}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve({ child, output: () => output, exited });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code}: ${args.join(" ")}\n${output}`));
    });
  });
}

/** Runs `command args` to its end and resolves with its exit code and output (killed after timeoutMs, when given). */
export function runToEnd(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env && { ...process.env, ...options.env }, timeout: options.timeoutMs });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** SIGTERM, then the exit code (undefined when nothing was started). */
export async function stopProcess(p: Started | undefined): Promise<number | null | undefined> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return p?.child.exitCode;
  p.child.kill("SIGTERM");
  return p.exited;
}

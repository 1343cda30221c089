/**
 * Runs `dex server` as a child process from the compiled CLI (cli/bin/dex.js, the
 * installed `dex` bin), exactly as `pnpm dex server` and the image run it, so tests can SIGKILL it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
/** Node arguments that run the compiled `dex` (built by `pnpm build`; testing/src/global-setup.ts rebuilds what is stale). */
export const dexCommand = [`${repoRoot}cli/bin/dex.js`];

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly address: string;
  /** Everything the process wrote, for failure messages. */
  output(): string;
  readonly exited: Promise<number | null>;
}

/** Runs a dex CLI command to completion; resolves with its exit code and output. */
export function runDex(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...dexCommand, ...args], { cwd: repoRoot, env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Starts `dex server` and resolves once it prints that it is listening. Open (--insecure-no-auth)
 * unless `requireApiKeys`: the tests that are not about authentication send no key.
 */
export function startServerProcess(options: {
  databaseUrl: string;
  port: number;
  timeoutMs?: number;
  requireApiKeys?: boolean;
  env?: Record<string, string>;
}): Promise<ServerProcess> {
  return new Promise((resolve, reject) => {
    const auth = options.requireApiKeys ? [] : ["--insecure-no-auth"];
    const child = spawn(process.execPath, [...dexCommand, "server", "--port", String(options.port), "--host", "127.0.0.1", ...auth], {
      cwd: repoRoot,
      env: { ...process.env, DEX_DATABASE_URL: options.databaseUrl, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`dex server did not start within ${options.timeoutMs ?? 20_000} ms:\n${output}`));
    }, options.timeoutMs ?? 20_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (\S+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, address: match[1]!, output: () => output, exited });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`dex server exited with code ${code} before listening:\n${output}`));
    });
  });
}

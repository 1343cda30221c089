/**
 * Runs `dex server` as a child process from the compiled CLI (cli/bin/dex.js, the
 * installed `dex` bin), exactly as `pnpm dex server` and the image run it, so tests can SIGKILL it.
 */
import type { ChildProcess } from "node:child_process";
import { repoRoot, runToEnd, startProcess } from "./spawned.js";

export { repoRoot };
/** Node arguments that run the compiled `dex` (built by `pnpm build`; testing/src/build-setup.ts rebuilds what is stale). */
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
  return runToEnd(process.execPath, [...dexCommand, ...args], { cwd: repoRoot, env });
}

/**
 * Starts `dex server` and resolves once it prints that it is listening. Open (--insecure-no-auth)
 * unless `requireApiKeys`: the tests that are not about authentication send no key.
 */
export async function startServerProcess(options: {
  databaseUrl: string;
  port: number;
  timeoutMs?: number;
  requireApiKeys?: boolean;
  env?: Record<string, string>;
}): Promise<ServerProcess> {
  const auth = options.requireApiKeys ? [] : ["--insecure-no-auth"];
  const listening = /listening on (\S+)/;
  const started = await startProcess([...dexCommand, "server", "--port", String(options.port), "--host", "127.0.0.1", ...auth], listening, {
    env: { DEX_DATABASE_URL: options.databaseUrl, ...options.env },
    timeoutMs: options.timeoutMs ?? 20_000,
  });
  return { ...started, address: listening.exec(started.output())![1]! };
}

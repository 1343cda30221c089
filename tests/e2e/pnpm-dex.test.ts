/**
 * `pnpm dex …` in this checkout behaves like the installed `dex` (issue 11): pnpm prints nothing of its
 * own (no `$ node …` echo, no `[ELIFECYCLE]` line), dex's exit code comes back unchanged, and SIGTERM
 * to the pnpm process a user started stops the dex server under it (a root script left it orphaned
 * and serving). pnpm runs the bin of the root's @dex/cli dependency: see decision 0008.
 */
import { execFile, spawn } from "node:child_process";
import { connect } from "node:net";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { repoRoot } from "../support/server-process.js";
import { startProcess, stopProcess, type Started } from "../support/spawned.js";

const exec = promisify(execFile);

function pnpmDex(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return exec("pnpm", ["dex", ...args], { cwd: repoRoot }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });
}

describe("pnpm dex", () => {
  let db: TestDatabase;
  let server: Started | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await stopProcess(server);
    await db?.drop();
  });

  it("prints only what dex prints and returns its exit code", async () => {
    const ok = await pnpmDex(["--help"]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^Usage: dex/);
    expect(ok.stderr).toBe("");

    const port = await freePort(); // nothing listens there
    const failed = await pnpmDex(["workflow", "describe", "some-run", "--address", `127.0.0.1:${port}`]);
    expect(failed.code).not.toBe(0);
    expect(failed.stdout).toBe("");
    expect(failed.stderr.trim().split("\n")).toHaveLength(1);
    expect(failed.stderr).toMatch(/^dex: /);
    expect(failed.stderr).not.toMatch(/ELIFECYCLE|\$ node/);
  });

  it("stops the server under it when the pnpm process gets SIGTERM", async () => {
    const port = await freePort();
    server = await startProcess(["dex", "server", "--port", String(port), "--insecure-no-auth"], /listening on/, {
      command: "pnpm",
      env: { DEX_DATABASE_URL: db.url },
    });
    expect(await accepts(port)).toBe(true);
    const { stdout } = await exec("pgrep", ["-f", `dex.js server --port ${port}`]);
    const dexPids = stdout.trim().split("\n").map(Number);
    expect(dexPids.length).toBeGreaterThan(0);

    server.child.kill("SIGTERM"); // to pnpm, not to node
    expect(await server.exited).toBe(0);
    await waitFor(() => dexPids.every((pid) => !isAlive(pid)), { message: "the dex server process to exit" });
    expect(await accepts(port)).toBe(false);
  });
});

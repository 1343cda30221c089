/**
 * docs/architecture.md is code (house style): every file or directory it names in backticks, and
 * every relative link, must exist. The page names server files from `server/src` (`engine/start.ts`)
 * and SDK files from `sdk-ts/src` or its `worker/` folder, as a reader would look for them.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../support/server-process.js";

const page = join(repoRoot, "docs/architecture.md");
const BASES = ["", "server", "server/src", "sdk-ts/src", "sdk-ts/src/worker", "cli/src"].map((b) => join(repoRoot, b));

/** Backticked tokens that name a path: a slash or a file extension, not a package name or a bare extension. */
function namedPaths(text: string): string[] {
  const tokens = [...text.matchAll(/`([^`\s]+)`/g)].map((m) => m[1]!);
  return [...new Set(tokens.filter((t) => /\/|\.(ts|js|sql|md|proto|json)$/.test(t) && !t.startsWith("@") && !t.startsWith(".") && !t.includes("://")))];
}

function exists(path: string): boolean {
  return BASES.some((base) => {
    const full = join(base, path);
    if (!path.includes("*")) return existsSync(full);
    const dir = dirname(full);
    const pattern = new RegExp(`^${path.split("/").pop()!.replace(/\./g, "\\.").replace(/\*/g, ".*")}$`);
    return existsSync(dir) && readdirSync(dir).some((f) => pattern.test(f));
  });
}

describe("docs/architecture.md", () => {
  const text = readFileSync(page, "utf8");

  it("names only paths that exist", () => {
    const paths = namedPaths(text);
    expect(paths.length).toBeGreaterThan(30);
    expect(paths.filter((p) => !exists(p))).toEqual([]);
  });

  it("links only to files that exist", () => {
    const links = [...text.matchAll(/\]\(([^)#\s]+)/g)].map((m) => m[1]!).filter((l) => !l.includes("://"));
    expect(links.length).toBeGreaterThan(0);
    expect(links.filter((l) => !existsSync(join(dirname(page), l)))).toEqual([]);
  });
});

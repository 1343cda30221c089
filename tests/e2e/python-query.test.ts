/**
 * Queries from a Python grpcio client built only from the .proto files (issue
 * 14, done-when 4): QueryRun against a run a TypeScript worker holds, with an
 * argument, the built-in pending query, and the error for a missing handler.
 * Skipped, saying why, where the tools are missing (.ci/run installs them).
 */
import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";
import { generatePythonStubs, pythonSkipReason, runPython } from "../support/python.js";
import { repoRoot } from "../support/server-process.js";

const skipReason = pythonSkipReason("python-query.test.ts");

async function greeter(ctx: WorkflowContext, input: { name: string }) {
  ctx.setQueryHandler("greeting", (args: { punctuation?: string } | undefined) => `hello, ${input.name}${args?.punctuation ?? ""}`);
  return ctx.waitForEvent("stop");
}

describe.skipIf(skipReason !== undefined)("queries from a Python grpcio client", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  let stubs: string | undefined;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ greeter });
    stubs = await generatePythonStubs();
  });
  afterAll(async () => {
    await h?.close();
    if (stubs) await rm(stubs, { recursive: true, force: true });
  });

  it("queries a run a TypeScript worker holds", async () => {
    const handle = await h.client.start(greeter, { instanceId: "py-query-1", input: { name: "Ada" } });
    await waitFor(async () => (await handle.query<string>("greeting")) === "hello, Ada");
    const run = await runPython([`${repoRoot}tests/python/query_run.py`, stubs!, h.server.address, handle.runId!]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      answer: "hello, Ada?",
      pending: { activities: [], timers: [], eventWaits: [{ seq: 1, eventName: "stop" }], children: [], conditions: 0 },
      unknown: { code: "INVALID_ARGUMENT", message: expect.stringContaining('no query handler "nope"; it has: greeting, __dex_pending') },
    });
    await handle.sendEvent("stop");
    await handle.result();
  });
});

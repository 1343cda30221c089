/**
 * Typed error details end to end (docs/errors.md): the TypeScript SDK's
 * DexError fields, and a Python grpcio client that knows only the .proto
 * files reading the same details from the grpc-status-details-bin trailer.
 * The Python half is skipped, saying why, where its tools are missing.
 */
import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS } from "@dex/testing";
import { DexError, type WorkflowContext } from "@dex/sdk";
import { startHarness, type Harness } from "../support/harness.js";
import { generatePythonStubs, pythonSkipReason, runPython } from "../support/python.js";
import { repoRoot } from "../support/server-process.js";

async function refusal(promise: Promise<unknown>): Promise<DexError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(DexError);
  return err as DexError;
}

async function quick(_ctx: WorkflowContext, input: { n: number }) {
  return { doubled: input.n * 2 };
}

async function waitsForever(ctx: WorkflowContext) {
  return ctx.executeActivity("nobodyServesThis", null);
}

const skipPython = pythonSkipReason("the Python half of error-details.test.ts");

describe("typed error details", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ quick, waitsForever });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("the SDK's DexError names the open run that blocked a start", async () => {
    const first = await h.client.start(waitsForever, { instanceId: "cart-1" });
    const err = await refusal(h.client.start(waitsForever, { instanceId: "cart-1" }));
    expect(err.code).toBe("ALREADY_EXISTS");
    expect(err.reason).toBe("RUN_ALREADY_OPEN");
    expect(err.runId).toBe(first.runId);
    expect(err.instanceId).toBe("cart-1");
    // What the field is for: reach the open run without parsing the message.
    expect(["CREATED", "RUNNING"]).toContain((await h.client.getHandle({ runId: err.runId! }).describe()).status);
  });

  it("the SDK's DexError says how an ended run ended when it refuses an event or a cancel", async () => {
    const handle = await h.client.start(quick, { instanceId: "done-1", input: { n: 21 } });
    expect(await handle.result()).toEqual({ doubled: 42 });
    // One at a time: a refusal made before it is awaited would be an unhandled rejection.
    for (const call of [() => handle.sendEvent("late", { x: 1 }), () => handle.cancel("too late")]) {
      const err = await refusal(call());
      expect(err.code).toBe("FAILED_PRECONDITION");
      expect(err.reason).toBe("RUN_ENDED");
      expect(err.runId).toBe(handle.runId);
      expect(err.runStatus).toBe("COMPLETED");
    }
  });

  describe.skipIf(skipPython !== undefined)("a Python grpcio client built from the .proto files", () => {
    let stubs: string;
    beforeAll(async () => {
      stubs = await generatePythonStubs();
    });
    afterAll(async () => {
      if (stubs) await rm(stubs, { recursive: true, force: true });
    });

    it("reads the open run's id and an ended run's status from the trailer", async () => {
      // Asynchronously: the server runs in this process and must keep serving meanwhile.
      const run = await runPython([`${repoRoot}tests/python/error_details.py`, stubs, h.server.address, "waitsForever", "py-errors-1"]);
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      const out = JSON.parse(run.stdout) as { run_id: string } & Record<string, unknown>;
      expect(out).toEqual({
        run_id: out.run_id,
        already_exists: {
          code: "ALREADY_EXISTS",
          reason: "ERROR_REASON_RUN_ALREADY_OPEN",
          run_id: out.run_id,
          instance_id: "py-errors-1",
          run_status: "RUN_STATUS_UNSPECIFIED",
        },
        ended: {
          code: "FAILED_PRECONDITION",
          reason: "ERROR_REASON_RUN_ENDED",
          run_id: out.run_id,
          instance_id: "py-errors-1",
          run_status: "RUN_STATUS_TERMINATED",
        },
        invalid_argument: null,
        invalid_argument_code: "INVALID_ARGUMENT",
      });
      expect(out.run_id).toMatch(/^[0-9a-f-]{36}$/);
    });
  });
});

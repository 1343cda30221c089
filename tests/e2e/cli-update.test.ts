/** `dex workflow update`: the compiled `dex` as a process against a real server and worker (decision 0024). */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";
import { runDex } from "../support/server-process.js";
import { cartWorkflows } from "./fixtures/update-cart.mjs";

describe("dex workflow update", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker(cartWorkflows());
    h.activityWorker({ price: async (sku: string) => sku.length });
  });
  afterAll(async () => {
    await h?.close();
  });

  const update = (...args: string[]) => runDex(["workflow", "update", ...args, "--address", h.server.address]);

  it("prints the handler's answer, the same answer for the same --id, and one line with exit 1 for a rejection", async () => {
    await h.client.start("cart", { instanceId: "cli-cart" });
    const added = await update("cli-cart", "addItem", "--payload", '{"sku":"kiwi"}', "--id", "cli-1");
    expect(added.stderr).toBe("");
    expect(added.code).toBe(0);
    expect(JSON.parse(added.stdout)).toEqual({ count: 1, price: 4 });

    const again = await update("cli-cart", "addItem", "--payload", '{"sku":"other"}', "--id", "cli-1", "--json");
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ updateId: "cli-1", result: { count: 1, price: 4 } });

    const rejected = await update("cli-cart", "addItem", "--payload", '{"quantity":2}');
    expect(rejected.code).toBe(1);
    expect(rejected.stderr.trim().split("\n")).toHaveLength(1);
    expect(rejected.stderr).toMatch(/was rejected by run .*: item\.sku is required/);

    const unknown = await update("cli-cart", "refund");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no update handler named "refund"; the workflow has: addItem, checkout (UpdateHandlerNotFound)');
  });

  it("refuses bad input with one line", async () => {
    const out = await update("cli-cart", "addItem", "--payload", "{not json");
    expect(out.code).not.toBe(0);
    expect(out.stderr.trim().split("\n")).toHaveLength(1);
  });
});

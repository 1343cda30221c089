/**
 * An update accepted before the server is killed (SIGKILL, no graceful shutdown) is answered by the
 * next server on the same database: the caller's UpdateRun is retried with the same update id and
 * resumes the wait, the handler's activity runs again (at least once), and history records the
 * update once (decision 0024).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS } from "@dex/testing";
import { startCrashRestart, type CrashRestart } from "../support/crash-restart.js";

let env: CrashRestart | undefined;

const activities = {
  async price(sku: string) {
    // Crash the server while the accepted update's handler waits for this activity (the first time).
    await env!.crashOnce();
    return sku.length;
  },
};

async function shop(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>({ startToCloseTimeout: "2s", retry: { initialInterval: "100ms" } });
  let closed = false;
  ctx.setUpdateHandler("add", async (sku: string) => ({ sku, price: await acts.price(sku) }));
  ctx.setUpdateHandler("close", () => {
    closed = true;
  });
  await ctx.condition(() => closed);
  await ctx.allHandlersFinished();
  return "closed";
}

describe("server killed between an update's acceptance and its completion", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  beforeAll(async () => {
    env = await startCrashRestart({ workflows: { shop }, activities });
  });
  afterAll(async () => {
    await env?.close();
  });

  it("the caller gets the handler's answer from the next server, and history records the update once", async () => {
    const handle = await env!.client.start(shop, { instanceId: "update-crash" });
    const answer = handle.update("add", "teapot", { updateId: "add-teapot" });
    answer.catch(() => {});
    await env!.restartAfterCrash();

    expect(await answer).toEqual({ sku: "teapot", price: 6 });
    await handle.update("close", undefined);
    expect(await handle.result()).toBe("closed");
    const history = await handle.history();
    const ofUpdate = history.filter(
      (e) => (e.attributes.case === "updateAccepted" || e.attributes.case === "updateCompleted") && e.attributes.value.updateId === "add-teapot",
    );
    expect(ofUpdate.map((e) => e.attributes.case)).toEqual(["updateAccepted", "updateCompleted"]);
    expect(history.filter((e) => e.attributes.case === "activityScheduled")).toHaveLength(1);
  });
});

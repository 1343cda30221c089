/**
 * Replays histories recorded from a real server (fixtures/*.history.json,
 * re-recorded by running e2e-smoke.test.ts with DEX_RECORD_FIXTURES=1)
 * against today's workflow code: the check a user runs before deploying a change.
 */
import { readFile } from "node:fs/promises";
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { HistoryEventSchema, type HistoryEvent } from "@dex/proto";
import { describe, expect, it } from "vitest";
import { NonDeterminismError, replayHistory, type WorkflowContext } from "../src/index.js";
import { orderWorkflow } from "./fixtures/order.js";

async function load(name: string): Promise<HistoryEvent[]> {
  const json = JSON.parse(await readFile(new URL(`./fixtures/${name}.history.json`, import.meta.url), "utf8")) as JsonValue[];
  return json.map((event) => fromJson(HistoryEventSchema, event));
}

describe("recorded histories", () => {
  it.each(["order-completed", "order-failed"])("%s replays against the current orderWorkflow", async (name) => {
    const history = await load(name);
    await expect(replayHistory(orderWorkflow, history)).resolves.toBeUndefined();
  });

  it("reads what `dex workflow history --json` prints and picks the workflow from a registry", async () => {
    const events = (await load("order-completed")).map((event) => toJson(HistoryEventSchema, event));
    const text = JSON.stringify({ runId: "0197a000-0000-7000-8000-0000000000aa", events });
    await expect(replayHistory({ orderWorkflow }, text)).resolves.toBeUndefined();
    await expect(replayHistory({ orderWorkflow }, { events })).resolves.toBeUndefined();
    await expect(replayHistory({ other: orderWorkflow }, text)).rejects.toThrow(/workflow "orderWorkflow", which the given workflows do not include \(given: other\)/);
  });

  it("catches a change that would break runs in flight", async () => {
    // Someone "improves" the workflow by charging before reserving.
    async function orderWorkflow(ctx: WorkflowContext, input: { sku: string; qty: number; amount: number }) {
      await ctx.executeActivity("charge", { amount: input.amount });
      return ctx.executeActivity("reserve", { sku: input.sku, qty: input.qty });
    }
    const error = await replayHistory(orderWorkflow, await load("order-completed")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NonDeterminismError);
    expect((error as Error).message).toContain('history event 3: recorded activity_scheduled(seq 1, "reserve")');
    expect((error as Error).message).toContain('produced activity_scheduled(seq 1, "charge")');
  });
});

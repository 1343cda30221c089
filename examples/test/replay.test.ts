/**
 * Replays the example's recorded histories (examples/order-fulfilment/histories,
 * recorded from real runs by tests/e2e/example.test.ts with
 * DEX_RECORD_HISTORIES=1) against the current workflow code: a change that
 * would break running workflows fails here, before it is deployed.
 */
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ActivityFailure, NonDeterminismError, replayHistory, type WorkflowContext } from "@dex/sdk";
import type { activities } from "../order-fulfilment/activities.js";
import type { Order } from "../order-fulfilment/types.js";
import { workflows } from "../order-fulfilment/workflows.js";

const dir = fileURLToPath(new URL("../order-fulfilment/histories/", import.meta.url));
const files = (await readdir(dir)).filter((file) => file.endsWith(".json")).sort();

describe("recorded histories of the example", () => {
  it("exist for every path of the example", () => {
    expect(files).toEqual(["approval-timed-out.json", "approved.json", "cancelled.json", "payment-declined.json", "shipment.json", "shipped.json", "shipping-failed.json"]);
  });

  it.each(files)("%s replays clean against the current code", async (file) => {
    await expect(replayHistory(workflows, await readFile(`${dir}${file}`, "utf8"))).resolves.toBeUndefined();
  });

  it("catches a reordered workflow, naming the first diverging event", async () => {
    // A "refactor" that charges before reserving stock: fine for new runs, fatal for running ones.
    async function orderFulfilment(ctx: WorkflowContext, order: Order) {
      const steps = ctx.activities<typeof activities>();
      const total = order.lines.reduce((sum, line) => sum + line.quantity * line.unitPriceCents, 0);
      ctx.setStatus("reserving stock");
      try {
        await steps.chargePayment({ orderId: order.orderId, card: order.card, amountCents: total });
      } catch (err) {
        if (!(err instanceof ActivityFailure)) throw err;
      }
      await steps.reserveStock({ orderId: order.orderId, lines: order.lines });
      return null;
    }
    const error = await replayHistory({ ...workflows, orderFulfilment }, await readFile(`${dir}shipped.json`, "utf8")).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(NonDeterminismError);
    const message = (error as Error).message;
    expect(message).toMatch(/history event \d+/);
    expect(message).toContain("reserveStock");
    expect(message).toContain("chargePayment");
  });
});

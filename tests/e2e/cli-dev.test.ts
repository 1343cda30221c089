/**
 * The quick start, as a user runs it: `dex dev` with a data directory, the
 * example's worker, then `dex workflow start/result/list/history`. Then the
 * CLI's one-line errors, and state surviving a `dex dev` restart.
 */
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "@dex/server";
import { dexCommand, runDex } from "../support/server-process.js";
import { startProcess, stopProcess as stop, type Started } from "../support/spawned.js";

const order = {
  orderId: "o-1001",
  customerEmail: "ada@example.com",
  card: "4242424242424242",
  address: "1 Analytical Engine Way",
  lines: [
    { sku: "kettle", quantity: 1, unitPriceCents: 3999 },
    { sku: "mug", quantity: 2, unitPriceCents: 899 },
  ],
};

describe("dex dev and the workflow commands", () => {
  const dataDir = `${tmpdir()}/dex-cli-test-${randomBytes(4).toString("hex")}`;
  let port: number;
  let address: string;
  let dev: Started | undefined;
  let worker: Started | undefined;

  beforeAll(async () => {
    port = await freePort();
    address = `127.0.0.1:${port}`;
    dev = await startProcess([...dexCommand, "dev", "--port", String(port), "--data-dir", dataDir], /press Ctrl-C/);
    worker = await startProcess(["examples/dist/order-fulfilment/worker.js"], /polling/, { env: { DEX_ADDRESS: address } });
  });
  afterAll(async () => {
    await stop(worker);
    await stop(dev);
    await rm(dataDir, { recursive: true, force: true });
  });

  it("prints the address and a database URL a user can open with psql", () => {
    expect(dev!.output()).toContain(`listening on ${address}`);
    expect(dev!.output()).toMatch(/database: postgres:\/\/\S+/);
  });

  it("starts the example and shows its result, the run in the list, and its history", async () => {
    const start = await runDex(["workflow", "start", "orderFulfilment", "--id", "order-1001", "--input", JSON.stringify(order), "--label", "shop=web", "--address", address, "--json"]);
    expect(start.stderr).toBe("");
    expect(start.code).toBe(0);
    const { runId } = JSON.parse(start.stdout) as { runId: string };

    const result = await runDex(["workflow", "result", "order-1001", "--wait", "--json", "--address", address]);
    expect(result.code).toBe(0);
    const outcome = JSON.parse(result.stdout) as { runId: string; status: string; result: Record<string, unknown> };
    expect(outcome).toMatchObject({ runId, status: "COMPLETED" });
    expect(outcome.result).toMatchObject({ orderId: "o-1001", status: "shipped", trackingNumber: "TRK-O-1001", totalCents: 5797 });

    const list = await runDex(["workflow", "list", "--label", "shop=web", "--workflow", "orderFulfilment", "--json", "--address", address]);
    expect(list.code).toBe(0);
    expect((JSON.parse(list.stdout) as Array<{ runId: string; status: string }>).map((r) => [r.runId, r.status])).toEqual([[runId, "COMPLETED"]]);
    // The shipment child inherited the order's labels.
    const labelled = await runDex(["workflow", "list", "--label", "shop=web", "--json", "--address", address]);
    expect((JSON.parse(labelled.stdout) as Array<{ workflowName: string }>).map((r) => r.workflowName).sort()).toEqual(["orderFulfilment", "shipment"]);

    const table = await runDex(["workflow", "list", "--address", address]);
    expect(table.stdout).toContain(runId);
    expect(table.stdout).toContain("orderFulfilment");

    const history = await runDex(["workflow", "history", runId, "--json", "--address", address]);
    expect(history.code).toBe(0);
    const events = (JSON.parse(history.stdout) as { events: Array<Record<string, unknown>> }).events;
    expect(Object.keys(events[0]!)).toContain("runStarted");
    expect(events.filter((e) => "activityScheduled" in e).length).toBeGreaterThanOrEqual(3);
    expect(Object.keys(events.at(-1)!)).toContain("runCompleted");

    const text = await runDex(["workflow", "history", runId, "--address", address]);
    expect(text.stdout).toContain("run completed");
    const describe = await runDex(["workflow", "describe", runId, "--address", address]);
    expect(describe.stdout).toMatch(/status:\s+COMPLETED/);
  });

  it("prints one clear line and exits 1 for user errors", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["workflow", "start", "orderFulfilment", "--id", "x", "--input", "{not json", "--address", address], /--input is not valid JSON/],
      [["workflow", "describe", "no-such-instance", "--address", address], /NOT_FOUND/],
      [["workflow", "result", "x", "--address", "127.0.0.1:1"], /cannot reach the dex server at 127\.0\.0\.1:1/],
      [["workflow", "start", "orderFulfilment", "--address", address], /required option '--id <instance-id>'/],
      [["workflow", "list", "--status", "sleepy", "--address", address], /unknown status "sleepy"/],
      [["workflow", "start", "orderFulfilment", "--id", "x", "--priority", "101", "--address", address], /--priority must be a whole number from 0 to 100/],
      [["server"], /no database: pass --database-url or set DEX_DATABASE_URL/],
      [["frobnicate"], /unknown command 'frobnicate'/],
    ];
    for (const [args, message] of cases) {
      const { code, stdout, stderr } = await runDex(args, { DEX_DATABASE_URL: "" });
      expect({ args, code, stdout }).toEqual({ args, code: 1, stdout: "" });
      expect(stderr).toMatch(message);
      expect(stderr.trim().split("\n")).toHaveLength(1);
      expect(stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("keeps its state across a restart when --data-dir is given", async () => {
    await stop(worker);
    expect(await stop(dev)).toBe(0);
    dev = await startProcess([...dexCommand, "dev", "--port", String(port), "--data-dir", dataDir], /press Ctrl-C/);
    const list = await runDex(["workflow", "list", "--id", "order-1001", "--json", "--address", address]);
    expect((JSON.parse(list.stdout) as Array<{ status: string }>).map((r) => r.status)).toEqual(["COMPLETED"]);
  });
});

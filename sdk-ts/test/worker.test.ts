import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { waitFor } from "@dex/testing";
import type { Logger } from "../src/common/logger.js";
import { createActivityWorker } from "../src/worker/activity-worker.js";
import { RunCache } from "../src/worker/run-cache.js";
import { createWorkflowWorker } from "../src/worker/workflow-worker.js";
import { newExecution } from "./history-builder.js";

function recordingLogger() {
  const lines: { level: string; message: string }[] = [];
  const at = (level: string) => (message: string) => void lines.push({ level, message });
  const logger: Logger = { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
  return { logger, lines };
}

async function unusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("run cache", () => {
  const exec = (length: number) => {
    const e = newExecution(async () => 1);
    e.historyLength = length;
    return e;
  };

  it("returns a run only at the expected history length, and takes it out while in use", () => {
    const cache = new RunCache(10);
    cache.put("a", exec(5));
    expect(cache.take("a", 6)).toBeUndefined();
    expect(cache.has("a")).toBe(false);
    const e = exec(5);
    cache.put("a", e);
    expect(cache.take("a", 5)).toBe(e);
    expect(cache.has("a")).toBe(false);
  });

  it("evicts the least recently used run beyond its capacity", () => {
    const cache = new RunCache(2);
    cache.put("a", exec(1));
    cache.put("b", exec(1));
    cache.put("a", cache.take("a", 1)!); // a is now the most recent
    cache.put("c", exec(1));
    expect(cache.has("b")).toBe(false);
    expect(cache.has("a") && cache.has("c")).toBe(true);
    expect(cache.size).toBe(2);
  });
});

describe("workers without a server", () => {
  it("back off while the server is away, log the outage once, and shut down promptly", async () => {
    const { logger, lines } = recordingLogger();
    const worker = createActivityWorker({
      address: `127.0.0.1:${await unusedPort()}`,
      taskQueue: "default",
      activities: { noop: async () => undefined },
      logger,
    });
    worker.start();
    await waitFor(() => lines.some((l) => l.level === "warn"), { message: "the outage warning" });
    // Several more polls fail (back-off starts at 100 ms) without more warnings.
    await waitFor(() => lines.filter((l) => l.level === "debug").length >= 3, { message: "three failed polls" });
    const warnings = lines.filter((l) => l.level === "warn");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.message).toMatch(/cannot reach the dex server for activity queue "default"/);
    const started = performance.now();
    await worker.shutdown();
    expect(performance.now() - started).toBeLessThan(2_000);
    await expect(worker.done).resolves.toBeUndefined();
  });

  it("shutdown before start resolves at once", async () => {
    const worker = createWorkflowWorker({
      address: `127.0.0.1:${await unusedPort()}`,
      taskQueue: "default",
      workflows: { wf: async () => 1 },
      logger: recordingLogger().logger,
    });
    await worker.shutdown();
    await expect(worker.done).resolves.toBeUndefined();
  });

  it("validates options with messages that say what to fix", () => {
    expect(() => createWorkflowWorker({ taskQueue: "default", workflows: {} })).toThrow(/register at least one workflow/);
    expect(() => createActivityWorker({ taskQueue: "", activities: { a: async () => 1 } })).toThrow(/taskQueue is required/);
    expect(() =>
      createActivityWorker({ taskQueue: "q", activities: { a: async () => 1 }, maxConcurrentActivities: 0 }),
    ).toThrow(/maxConcurrentActivities must be a positive integer/);
    expect(() => createActivityWorker({ taskQueue: "q", activities: { a: async () => 1 }, autoHeartbeat: { interval: "soon" } })).toThrow(
      /invalid duration "soon"/,
    );
    expect(() => createActivityWorker({ taskQueue: "q", activities: { a: async () => 1 }, autoHeartbeat: { interval: 0 } })).toThrow(
      /autoHeartbeat.interval must be a positive duration/,
    );
  });
});

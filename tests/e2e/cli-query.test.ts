/**
 * `dex workflow query RUN NAME` and the built-in pending query in `dex workflow describe`
 * (decision 0023): the compiled `dex` as a process against a real server and worker.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskQueueType } from "@dex/proto";
import type { WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";
import { runDex } from "../support/server-process.js";

async function greeter(ctx: WorkflowContext, input: { name: string }) {
  let greeted = 0;
  ctx.setQueryHandler("greeting", (args: { punctuation?: string } | undefined) => `hello, ${input.name}${args?.punctuation ?? ""}`);
  ctx.setQueryHandler("greeted", () => greeted);
  for (;;) {
    await ctx.waitForEvent(`greet-${greeted}`);
    greeted++;
  }
}

describe("dex workflow query and describe's pending query", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ greeter });
    await h.client.raw.queues.createTaskQueue({ name: "nobody", type: TaskQueueType.WORKFLOW });
  });
  afterAll(async () => {
    await h?.close();
  });

  const dex = (...args: string[]) => runDex([...args, "--address", h.server.address]);

  it("prints the handler's answer, with --payload as its argument", async () => {
    const handle = await h.client.start(greeter, { instanceId: "cli-q-1", input: { name: "ada" } });
    await waitFor(async () => (await handle.query<number>("greeted")) === 0);
    const out = await dex("workflow", "query", "cli-q-1", "greeting", "--payload", '{"punctuation":"!"}');
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toBe("hello, ada!");
  });

  it("prints one line and exits 1 when the workflow has no such handler", async () => {
    await h.client.start(greeter, { instanceId: "cli-q-2", input: { name: "bo" } });
    const out = await dex("workflow", "query", "cli-q-2", "nope");
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('no query handler "nope"; it has: greeting, greeted, __dex_pending');
    expect(out.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("describe shows where the workflow code waits, asked of a worker", async () => {
    const handle = await h.client.start(greeter, { instanceId: "cli-q-3", input: { name: "cy" } });
    await waitFor(async () => (await handle.query<number>("greeted")) === 0);
    const out = await dex("workflow", "describe", "cli-q-3");
    expect(out.code).toBe(0);
    expect(out.stdout).toContain("workflow code waits on (asked a worker): event greet-0 (seq 1)");
    const json = JSON.parse((await dex("workflow", "describe", "cli-q-3", "--json")).stdout) as { codePending?: unknown };
    expect(json.codePending).toEqual({ activities: [], timers: [], eventWaits: [{ seq: 1, eventName: "greet-0" }], children: [], conditions: 0 });
  });

  it("describe says it could not ask when no worker polls the run's queue", async () => {
    await h.client.start(greeter, { instanceId: "cli-q-4", input: { name: "di" }, taskQueue: "nobody" });
    const out = await dex("workflow", "describe", "cli-q-4");
    expect(out.code).toBe(0);
    expect(out.stdout).toContain("workflow code: could not ask a worker where it waits (FAILED_PRECONDITION: no worker took");
  });
});

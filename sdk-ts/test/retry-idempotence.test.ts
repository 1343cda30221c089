/**
 * A call that reaches the server but whose answer is lost is retried, and the retry must not do
 * the work again: a start carries its request id (one run), an event its event id (one delivery),
 * a terminate finds its own earlier effect. A proxy between client and server lets the requests
 * through and swallows the answers until the test cuts the connection.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type DexServer } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import { createClient, createWorkflowWorker, type Client, type Worker, type WorkflowContext } from "../src/index.js";
import { recordingLogger, startLossyProxy, type LossyProxy } from "./connection-support.js";

async function approval(ctx: WorkflowContext) {
  return ctx.waitForEvent<string>("approval");
}

async function forever(ctx: WorkflowContext) {
  await ctx.waitForEvent("never");
}

describe("a retried call whose first try landed", () => {
  let db: TestDatabase;
  let server: DexServer;
  let proxy: LossyProxy;
  let direct: Client;
  let viaProxy: Client;
  let worker: Worker;

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startServer({ databaseUrl: db.url, port: 0, ensureQueues: [{ type: "workflow", name: "default" }], logger: recordingLogger().logger });
    proxy = await startLossyProxy(server.address);
    direct = createClient({ address: server.address });
    viaProxy = createClient({ address: proxy.address });
    worker = createWorkflowWorker({ address: server.address, taskQueue: "default", workflows: { approval, forever }, logger: recordingLogger().logger });
    worker.start();
  });
  afterAll(async () => {
    await worker?.shutdown();
    direct?.close();
    viaProxy?.close();
    await proxy?.close();
    await server?.close();
    await db?.drop();
  });

  /** Lets `call` reach the server with its answer lost, waits until `landed`, then cuts: the client retries. */
  async function withLostAnswer<T>(call: () => Promise<T>, landed: () => Promise<boolean>, what: string): Promise<T> {
    await viaProxy.list({ pageSize: 1 }); // the connection is up, so only the call's own bytes are in play
    proxy.swallowAnswers();
    const pending = call();
    let settled = false;
    void pending.then(
      () => (settled = true),
      () => (settled = true),
    );
    await waitFor(landed, { message: what });
    expect(settled, "the caller has not heard back yet").toBe(false);
    proxy.cutAndHeal();
    return pending;
  }

  it("starts one run", async () => {
    const runs = async () => (await direct.list({ instanceId: "start-once" })).runs;
    const handle = await withLostAnswer(() => viaProxy.start(approval, { instanceId: "start-once" }), async () => (await runs()).length > 0, "the start to land");
    const [only, ...others] = await runs();
    expect(others).toEqual([]);
    expect(handle.runId).toBe(only!.runId);
  });

  it("delivers an event once", async () => {
    const run = await direct.start(approval, { instanceId: "event-once" });
    const events = async () => (await direct.getHandle({ runId: run.runId! }).history()).filter((e) => e.attributes.case === "externalEventReceived");
    const sent = await withLostAnswer(
      () => viaProxy.getHandle({ runId: run.runId! }).sendEvent("approval", "yes"),
      async () => (await run.describe()).status === "COMPLETED",
      "the event to land and complete the run",
    );
    // The run ended on the event before the retry: the retry finds its own event and resolves.
    expect(sent.runId).toBe(run.runId);
    expect(await run.result()).toBe("yes");
    expect(await events()).toHaveLength(1);
  });

  it("terminates without reporting the run it terminated as already ended", async () => {
    const run = await direct.start(forever, { instanceId: "terminate-once" });
    await withLostAnswer(
      () => viaProxy.getHandle({ runId: run.runId! }).terminate("test"),
      async () => (await run.describe()).status === "TERMINATED",
      "the terminate to land",
    );
    // Without a retry in between, terminating an ended run is refused.
    await expect(direct.getHandle({ runId: run.runId! }).terminate("again")).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
  });
  it("does not repeat an event sent through an instance id once the first try may have landed", async () => {
    // Through an instance id, a retry could reach a newer run of the instance: the SDK reports the
    // unknown outcome instead of retrying (handle.ts writeUnsentOnly).
    const run = await direct.start(forever, { instanceId: "event-by-instance" });
    const events = async () => (await run.history()).filter((e) => e.attributes.case === "externalEventReceived");
    const sent = withLostAnswer(
      () => viaProxy.getHandle({ instanceId: "event-by-instance" }).sendEvent("poke", 1),
      async () => (await events()).length === 1,
      "the event to land",
    );
    await expect(sent).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(await events()).toHaveLength(1);
    await run.terminate("done");
  });
});

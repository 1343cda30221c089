/**
 * End-to-end smoke test of the SDK against a real server and Postgres: a
 * two-activity workflow, a caught activity failure, the cached path and the
 * replay path. Full scenarios live in tests/e2e.
 */
import { writeFile } from "node:fs/promises";
import { toJson } from "@bufbuild/protobuf";
import { HistoryEventSchema, type HistoryEvent } from "@dex/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger, startServer } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import {
  ApplicationFailure,
  TimeoutFailure,
  createActivityWorker,
  createClient,
  createWorkflowWorker,
  WorkflowFailedError,
  type ActivityContext,
  type Client,
  type Logger,
  type Worker,
  type WorkflowContext,
} from "../src/index.js";
import { activities, orderWorkflow } from "./fixtures/order.js";

/** DEX_RECORD_FIXTURES=1 re-records the histories that recorded-history.test.ts replays. */
async function maybeRecord(name: string, history: HistoryEvent[]): Promise<void> {
  if (!process.env.DEX_RECORD_FIXTURES) return;
  const json = history.map((event) => toJson(HistoryEventSchema, event));
  await writeFile(new URL(`./fixtures/${name}.history.json`, import.meta.url), `${JSON.stringify(json, null, 2)}\n`);
}

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

let watchAbortReason: unknown;
const heartbeatActivities = {
  /** Fails its first attempt after recording progress; the next attempt resumes from it. */
  async resumable(_input: undefined, ctx: ActivityContext) {
    if (ctx.info.attempt === 1) {
      ctx.heartbeat({ progress: 5 });
      throw new Error("crashed half way");
    }
    return { attempt: ctx.info.attempt, resumedFrom: ctx.heartbeatDetails };
  },
  /** Heartbeats until its signal aborts (here: its start-to-close timeout passes). */
  async watch(_input: undefined, ctx: ActivityContext) {
    let i = 0;
    while (!ctx.signal.aborted) {
      ctx.heartbeat(i++);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    watchAbortReason = ctx.signal.reason;
    throw ctx.signal.reason;
  },
};

async function resumeWorkflow(ctx: WorkflowContext) {
  return ctx.activities<typeof heartbeatActivities>({ retry: { initialInterval: "50ms" } }).resumable();
}

async function watchWorkflow(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof heartbeatActivities>({
    startToCloseTimeout: "300ms",
    // Longer than start-to-close, so a heartbeat delayed on a loaded machine cannot end the attempt
    // first: only the start-to-close cap can, while the activity keeps heartbeating.
    heartbeatTimeout: "5s",
    retry: { maximumAttempts: 1 },
  });
  try {
    await acts.watch();
    return "not expected";
  } catch (err) {
    const cause = (err as Error).cause as TimeoutFailure;
    return { caught: (err as Error).name, cause: cause.name, timeoutType: cause.timeoutType };
  }
}

async function twoSteps(ctx: WorkflowContext, n: number) {
  const acts = ctx.activities<typeof activities>({ taskQueue: "default" });
  const a = await acts.charge({ amount: n });
  const b = await acts.charge({ amount: n + 1 });
  return [a, b, ctx.info.taskQueue];
}

async function parallelWorkflow(ctx: WorkflowContext, skus: string[]) {
  const acts = ctx.activities<typeof activities>();
  const results = await Promise.all(skus.map((sku) => acts.reserve({ sku, qty: 1 })));
  return results.map((r) => r.reservationId);
}

describe("SDK end to end", () => {
  let db: TestDatabase;
  let server: Awaited<ReturnType<typeof startServer>>;
  let client: Client;
  const workers: Worker[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startServer({
      databaseUrl: db.url,
      port: 0,
      ensureQueues: [
        { type: "workflow", name: "default" },
        { type: "activity", name: "default" },
        { type: "workflow", name: "nocache" },
      ],
      logger: silentLogger,
      workflowTaskRetry: { initialMs: 50, maxMs: 200 },
    });
    client = createClient({ address: server.address });
    workers.push(
      createWorkflowWorker({ address: server.address, taskQueue: "default", workflows: { orderWorkflow, parallelWorkflow, resumeWorkflow, watchWorkflow }, logger: quiet }),
      createActivityWorker({ address: server.address, taskQueue: "default", activities: { ...activities, ...heartbeatActivities }, logger: quiet }),
    );
    for (const worker of workers) worker.start();
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.shutdown()));
    client?.close();
    await server?.close();
    await db?.drop();
  });

  it("runs a two-activity workflow to its result", async () => {
    const handle = await client.start(orderWorkflow, { instanceId: "smoke-1", input: { sku: "book", qty: 2, amount: 30 } });
    expect(handle.runId).toMatch(/[0-9a-f-]{36}/);
    const result = await handle.result();
    expect(result).toMatchObject({ reservationId: "r-book-2", chargeId: "ch-30", clockIsTaskTime: true });

    const description = await handle.describe();
    expect(description).toMatchObject({ status: "COMPLETED", workflowName: "orderWorkflow", input: { sku: "book", qty: 2, amount: 30 } });
    expect(description.result).toEqual(result);

    const history = await handle.history();
    await maybeRecord("order-completed", history);
    const kinds = history.map((e) => e.attributes.case);
    expect(kinds).toEqual([
      "runStarted",
      "workflowTaskCompleted",
      "activityScheduled",
      "activityCompleted",
      "workflowTaskCompleted",
      "activityScheduled",
      "activityCompleted",
      "workflowTaskCompleted",
      "runCompleted",
    ]);
    const runs = await client.list({ instanceId: "smoke-1" });
    expect(runs.runs.map((r) => r.runId)).toEqual([handle.runId]);
  });

  it("surfaces a non-retryable activity failure the workflow catches, then fails the run with its own error", async () => {
    const handle = await client.start("orderWorkflow", { instanceId: "smoke-2", input: { sku: "tv", qty: 1, amount: 500 } });
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const failed = error as WorkflowFailedError;
    expect(failed.status).toBe("FAILED");
    expect(failed.cause).toBeInstanceOf(ApplicationFailure);
    expect((failed.cause as ApplicationFailure).type).toBe("OrderFailed");
    expect(failed.cause!.message).toBe("order failed: card declined; released r-tv-1");
    await maybeRecord("order-failed", await handle.history());
  });

  it("runs activities in parallel and finishes in call order", async () => {
    const handle = await client.start(parallelWorkflow, { instanceId: "smoke-3", input: ["a", "b", "c", "d"] });
    expect(await handle.result()).toEqual(["r-a-1", "r-b-1", "r-c-1", "r-d-1"]);
  });

  it("finishes a run on a fresh worker that must replay its history", async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const gated = {
      ...activities,
      ...heartbeatActivities,
      async charge(input: { amount: number }) {
        await gate;
        return `ch-${input.amount}`;
      },
    };
    // A second activity queue and workflow queue would be cleaner; here the gate is the charge activity.
    await workers[1]!.shutdown();
    const gatedWorker = createActivityWorker({ address: server.address, taskQueue: "default", activities: gated, logger: quiet });
    gatedWorker.start();
    workers[1] = gatedWorker;
    const handle = await client.start(orderWorkflow, { instanceId: "smoke-4", input: { sku: "pen", qty: 1, amount: 5 } });
    await waitFor(async () => (await handle.describe()).pendingActivities.some((a) => a.activityName === "charge"));
    // Replace the workflow worker: the new one has an empty cache and replays.
    await workers[0]!.shutdown();
    workers[0] = createWorkflowWorker({
      address: server.address,
      taskQueue: "default",
      workflows: { orderWorkflow, parallelWorkflow, resumeWorkflow, watchWorkflow },
      logger: quiet,
    });
    workers[0].start();
    open();
    expect(await handle.result()).toMatchObject({ reservationId: "r-pen-1", chargeId: "ch-5" });
  });

  it("reads history it lacks with GetRunHistory when its cache holds nothing", async () => {
    // The server sends only new events to the worker that completed the previous task; with no
    // cache this worker must fetch the history itself on every task.
    const worker = createWorkflowWorker({ address: server.address, taskQueue: "nocache", workflows: { twoSteps }, maxCachedRuns: 0, logger: quiet });
    worker.start();
    workers.push(worker);
    const handle = await client.start(twoSteps, { instanceId: "smoke-5", input: 7, taskQueue: "nocache" });
    expect(await handle.result()).toEqual(["ch-7", "ch-8", "nocache"]);
  });

  it("hands the last heartbeat details of a failed attempt to the next attempt", async () => {
    const handle = await client.start(resumeWorkflow, { instanceId: "smoke-6" });
    expect(await handle.result()).toEqual({ attempt: 2, resumedFrom: { progress: 5 } });
  });

  it("enforces start-to-close locally: the signal aborts and the workflow sees a TimeoutFailure", async () => {
    const handle = await client.start(watchWorkflow, { instanceId: "smoke-7" });
    const result = (await handle.result()) as { caught: string; cause: string; timeoutType: string };
    expect(result).toEqual({ caught: "ActivityFailure", cause: "TimeoutFailure", timeoutType: "START_TO_CLOSE" });
    expect(watchAbortReason).toBeInstanceOf(TimeoutFailure);
  });

  it("fails the workflow task of a workflow no worker registered, naming it", async () => {
    const handle = await client.start("noSuchWorkflow", { instanceId: "smoke-8" });
    const described = await waitFor(async () => {
      const d = await handle.describe();
      return d.pendingWorkflowTask?.lastFailure ? d : undefined;
    });
    expect(described.status).not.toMatch(/FAILED|COMPLETED/);
    expect(described.pendingWorkflowTask!.lastFailure!.message).toMatch(/workflow "noSuchWorkflow" is not registered on this worker/);
  });

  it("fails an unknown activity for good, as a typed failure the workflow sees", async () => {
    async function callsMissing(ctx: WorkflowContext) {
      return ctx.executeActivity("noSuchActivity", 1);
    }
    await workers[0]!.shutdown();
    workers[0] = createWorkflowWorker({ address: server.address, taskQueue: "default", workflows: { callsMissing }, logger: quiet });
    workers[0].start();
    const handle = await client.start(callsMissing, { instanceId: "smoke-9" });
    const error = (await handle.result().catch((e: unknown) => e)) as WorkflowFailedError;
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect(error.cause?.name).toBe("ActivityFailure");
    const cause = error.cause?.cause as ApplicationFailure;
    expect(cause.type).toBe("ActivityNotRegistered");
    expect(cause.nonRetryable).toBe(true);
    expect(cause.message).toMatch(/activity "noSuchActivity" is not registered/);
  });
});

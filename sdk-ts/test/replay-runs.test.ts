/**
 * replayRuns against a real server: more runs than one ListRuns page, histories
 * longer than one GetRunHistory page (a block of side effects longer than a
 * page, too), and the verdicts the same as replaying each history whole.
 */
import { readdir, readFile } from "node:fs/promises";
import type { HistoryEvent } from "@dex/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger, startServer } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import {
  createActivityWorker,
  createClient,
  createWorkflowWorker,
  NonDeterminismError,
  replayHistory,
  replayRuns,
  type Client,
  type RunReplayResult,
  type Worker,
  type Workflow,
  type WorkflowContext,
} from "../src/index.js";
import { parseHistory } from "../src/worker/replay-history.js";
import { replayRun } from "../src/worker/replay-run.js";
import { workflows as exampleWorkflows } from "../../examples/order-fulfilment/workflows.js";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const RUNS = 7;
const STEPS = 4;
const SIDE_EFFECTS = 5;

/** Per step one activity (an input between blocks), then a block of side effects, then a wait that stays open. */
async function stepper(ctx: WorkflowContext, input: { steps: number }) {
  for (let i = 0; i < input.steps; i++) await ctx.executeActivity("echo", i);
  for (let i = 0; i < SIDE_EFFECTS; i++) await ctx.sideEffect(() => i);
  return ctx.waitForEvent("go");
}

/** The same, with one more activity before the wait: diverges right after the side effects. */
async function stepperChanged(ctx: WorkflowContext, input: { steps: number }) {
  for (let i = 0; i < input.steps; i++) await ctx.executeActivity("echo", i);
  for (let i = 0; i < SIDE_EFFECTS; i++) await ctx.sideEffect(() => i);
  await ctx.executeActivity("echo", "new");
  return ctx.waitForEvent("go");
}

describe("replayRuns", () => {
  let db: TestDatabase;
  let server: Awaited<ReturnType<typeof startServer>>;
  let client: Client;
  const workers: Worker[] = [];
  const runIds: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startServer({
      databaseUrl: db.url,
      port: 0,
      ensureQueues: [
        { type: "workflow", name: "default" },
        { type: "activity", name: "default" },
      ],
      logger: silentLogger,
    });
    client = createClient({ address: server.address });
    workers.push(
      createWorkflowWorker({ address: server.address, taskQueue: "default", workflows: { stepper }, logger: quiet }),
      createActivityWorker({ address: server.address, taskQueue: "default", activities: { echo: async (x: unknown) => x }, logger: quiet }),
    );
    for (const worker of workers) worker.start();
    for (let i = 0; i < RUNS; i++) {
      const handle = await client.start(stepper, { instanceId: `stepper-${i}`, input: { steps: STEPS }, labels: { batch: i < 3 ? "a" : "b" } });
      runIds.push(handle.runId!);
    }
    for (const runId of runIds) {
      await waitFor(async () => (await client.getHandle({ runId }).describe()).pendingEventWaits.length > 0, { message: `run ${runId} to wait for "go"` });
    }
    // Stopped: the check reads histories that no worker is extending.
    await Promise.all(workers.map((w) => w.shutdown()));
  });

  afterAll(async () => {
    client?.close();
    await server?.close();
    await db?.drop();
  });

  it("checks every open run through small pages of runs and of history", async () => {
    const check = replayRuns({ client, workflows: { stepper }, listPageSize: 2, historyPageSize: 3, concurrency: 3 });
    const seen: RunReplayResult[] = [];
    for await (const result of check) seen.push(result);
    expect(seen.map((r) => r.runId).sort()).toEqual([...runIds].sort());
    const lengths = await Promise.all(runIds.map(async (runId) => (await client.getHandle({ runId }).history()).length));
    for (const result of seen) {
      expect(result).toMatchObject({ status: "replays", workflowName: "stepper", source: "server", taskQueue: "default" });
      // Longer than 3 pages of 3: the whole history was read and replayed.
      expect(result.eventsReplayed).toBe(lengths[runIds.indexOf(result.runId)]);
      expect(result.eventsReplayed).toBeGreaterThan(9);
    }
    expect(await check.summary()).toMatchObject({ checked: RUNS, replays: RUNS, fails: 0, workflows: [{ workflowName: "stepper", checked: RUNS }] });
  });

  it("reports the divergence a whole-history replay reports, for every run", async () => {
    const summary = await replayRuns({ client, workflows: { stepper: stepperChanged }, listPageSize: 3, historyPageSize: 2 }).summary();
    expect(summary).toMatchObject({ checked: RUNS, replays: 0, fails: RUNS });
    const whole = await replayHistory(stepperChanged, await client.getHandle({ runId: runIds[0]! }).history(), { runId: runIds[0]! }).catch((e: unknown) => e);
    expect(whole).toBeInstanceOf(NonDeterminismError);
    const expected = whole as NonDeterminismError;
    for (const failure of summary.workflows[0]!.failures) {
      expect(failure.status).toBe("non-determinism");
      expect(failure.failure).toMatchObject({ eventSequence: expected.eventSequence, eventKind: expected.eventKind, produced: expected.produced });
      expect(failure.failure?.produced).toContain('"echo"');
    }
  });

  it("selects runs by label and counts a workflow the code lacks as failing", async () => {
    const byLabel = await replayRuns({ client, workflows: { stepper }, filter: { labels: { batch: "a" } }, listPageSize: 1 }).summary();
    expect(byLabel.checked).toBe(3);
    const none = await replayRuns({ client, workflows: { stepper }, filter: { taskQueue: "elsewhere" } }).summary();
    expect(none.checked).toBe(0);
    const unknown = await replayRuns({ client, workflows: { other: stepper } }).summary();
    expect(unknown).toMatchObject({ checked: RUNS, fails: RUNS });
    expect(unknown.workflows[0]!.failures[0]).toMatchObject({ status: "unknown-workflow", eventsReplayed: 0 });
    expect(unknown.workflows[0]!.failures[0]!.failure?.message).toMatch(/unknown workflow "stepper".*registers: other/);
  });
});

describe("replay fed in pages", () => {
  const dir = new URL("../../examples/order-fulfilment/histories/", import.meta.url);

  async function* pagesOf(events: HistoryEvent[], size: number): AsyncGenerator<HistoryEvent[]> {
    for (let i = 0; i < events.length; i += size) yield events.slice(i, i + size);
  }

  async function check(file: string, workflows: Record<string, Workflow>, size: number) {
    const { runId, events } = parseHistory(await readFile(new URL(file, dir), "utf8"));
    const started = events[0]!.attributes.value as { workflowName: string; instanceId: string };
    const run = { runId: runId ?? "", instanceId: started.instanceId, workflowName: started.workflowName, taskQueue: "default", source: file };
    return { result: await replayRun(run, workflows, () => pagesOf(events, size)), events };
  }

  it("replays every recorded example history the same at every page size", async () => {
    const files = (await readdir(dir)).filter((f) => f.endsWith(".json"));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      for (const size of [1, 2, 3, 5, 1000]) {
        const { result, events } = await check(file, exampleWorkflows, size);
        expect({ file, size, status: result.status, replayed: result.eventsReplayed }).toEqual({ file, size, status: "replays", replayed: events.length });
      }
    }
  });

  it("names the same diverging event at every page size", async () => {
    // Skips the reservation: the first recorded activity no longer matches.
    async function orderFulfilment(ctx: WorkflowContext) {
      ctx.setStatus("reserving stock");
      await ctx.executeActivity("chargePayment", {});
      return null;
    }
    const changed = { ...exampleWorkflows, orderFulfilment };
    const failures = [];
    for (const size of [1, 2, 4, 1000]) failures.push((await check("shipped.json", changed, size)).result.failure);
    expect(failures[0]).toMatchObject({ recorded: expect.stringContaining("reserveStock"), produced: expect.stringContaining("chargePayment") });
    for (const failure of failures) expect(failure).toEqual(failures[0]);
  });
});

/**
 * The activity side against a real server and Postgres: automatic heartbeats
 * keep a long activity's lease, and turned off they let a silent activity time
 * out; the abort signal fires on cancellation and on a lost lease.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger, startServer } from "@dex/server";
import { createTestDatabase, waitFor, type TestDatabase } from "@dex/testing";
import {
  CancelledFailure,
  TimeoutFailure,
  WorkflowFailedError,
  createActivityWorker,
  createClient,
  createWorkflowWorker,
  type ActivityContext,
  type Client,
  type Logger,
  type Worker,
  type WorkflowContext,
} from "../src/index.js";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * The heartbeat timeout of the activities that must keep their lease. Automatic heartbeats go every
 * half lease, so this leaves a heartbeat half of it to arrive: 1 s of slack, for a loaded machine
 * (with 100-200 ms of slack the heartbeat tests failed at a load of 8-29, issue 11).
 */
const HEARTBEAT_TIMEOUT_MS = 2_000;

/** What each attempt saw, by run id. */
const seen = new Map<string, Array<{ attempt: number; started: boolean; abortReason?: unknown }>>();

function note(ctx: ActivityContext) {
  const entry = { attempt: ctx.info.attempt, started: true } as { attempt: number; started: boolean; abortReason?: unknown };
  seen.set(ctx.info.runId, [...(seen.get(ctx.info.runId) ?? []), entry]);
  return entry;
}

function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(signal.reason), { once: true }));
}

const activities = {
  /** Works for three heartbeat timeouts without ever calling ctx.heartbeat(). */
  async longWork(_: unknown, ctx: ActivityContext) {
    note(ctx);
    // The condition under test (outliving the heartbeat timeout), made by waiting: not a synchronisation.
    await new Promise((resolve) => setTimeout(resolve, 3 * HEARTBEAT_TIMEOUT_MS));
    return { attempt: ctx.info.attempt, aborted: ctx.signal.aborted };
  },
  /** The first attempt never heartbeats and waits for its signal; later attempts succeed at once. */
  async silentThenFine(_: unknown, ctx: ActivityContext) {
    const entry = note(ctx);
    if (ctx.info.attempt > 1) return { attempt: ctx.info.attempt };
    entry.abortReason = await aborted(ctx.signal);
    throw entry.abortReason;
  },
  /** Waits for its signal without heartbeating itself. */
  async untilAborted(_: unknown, ctx: ActivityContext) {
    const entry = note(ctx);
    entry.abortReason = await aborted(ctx.signal);
    throw entry.abortReason;
  },
};

async function callLongWork(ctx: WorkflowContext) {
  return ctx.activities<typeof activities>({ heartbeatTimeout: `${HEARTBEAT_TIMEOUT_MS}ms`, retry: { maximumAttempts: 1 } }).longWork(null);
}

async function callSilent(ctx: WorkflowContext) {
  const acts = ctx.activities<typeof activities>({
    taskQueue: "manual",
    // The second attempt, which never heartbeats either, must finish within it.
    heartbeatTimeout: `${HEARTBEAT_TIMEOUT_MS}ms`,
    retry: { initialInterval: "10ms", maximumAttempts: 2 },
  });
  return acts.silentThenFine(null);
}

async function callUntilAborted(ctx: WorkflowContext) {
  return ctx.activities<typeof activities>({ heartbeatTimeout: `${HEARTBEAT_TIMEOUT_MS}ms` }).untilAborted(null);
}

// Stays open after the cancellation until told, so the activity task outlives it (an ended run's
// activity tasks are deleted, which the activity would see as a lost lease instead).
async function cancelThenWait(ctx: WorkflowContext) {
  try {
    return await ctx.activities<typeof activities>({ heartbeatTimeout: `${HEARTBEAT_TIMEOUT_MS}ms` }).untilAborted(null);
  } catch (err) {
    if (!(err instanceof CancelledFailure)) throw err;
    await ctx.nonCancellable(() => ctx.waitForEvent("release"));
    throw err;
  }
}

describe("activity heartbeats and the abort signal", () => {
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
        { type: "activity", name: "manual" },
      ],
      logger: silentLogger,
    });
    client = createClient({ address: server.address });
    const address = server.address;
    workers.push(
      createWorkflowWorker({ address, taskQueue: "default", workflows: { callLongWork, callSilent, callUntilAborted, cancelThenWait }, logger: quiet }),
      createActivityWorker({ address, taskQueue: "default", activities, logger: quiet }),
      createActivityWorker({ address, taskQueue: "manual", activities, autoHeartbeat: false, logger: quiet }),
    );
    for (const worker of workers) worker.start();
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.shutdown()));
    client?.close();
    await server?.close();
    await db?.drop();
  });

  it("keeps the lease of an activity that outlives its heartbeat timeout without heartbeating", async () => {
    const handle = await client.start(callLongWork, { instanceId: "hb-long" });
    expect(await handle.result()).toEqual({ attempt: 1, aborted: false });
    expect(seen.get(handle.runId!)).toHaveLength(1);
  });

  it("with automatic heartbeats off, times out a silent attempt: its signal aborts and the next attempt runs", async () => {
    const handle = await client.start(callSilent, { instanceId: "hb-silent" });
    expect(await handle.result()).toEqual({ attempt: 2 });
    const [first] = seen.get(handle.runId!)!;
    expect(first!.abortReason).toBeInstanceOf(TimeoutFailure);
    expect((first!.abortReason as TimeoutFailure).timeoutType).toBe("HEARTBEAT");
  });

  it("aborts the signal with a CancelledFailure when the run is cancelled, through automatic heartbeats", async () => {
    const handle = await client.start(cancelThenWait, { instanceId: "hb-cancel" });
    await waitFor(() => seen.get(handle.runId!)?.length, { message: "the activity to start" });
    await handle.cancel("no longer needed");
    const reason = await waitFor(() => seen.get(handle.runId!)![0]!.abortReason, { message: "the signal to abort" });
    expect(reason).toBeInstanceOf(CancelledFailure);
    await handle.sendEvent("release");
    const error = (await handle.result().catch((e: unknown) => e)) as WorkflowFailedError;
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect(error.status).toBe("CANCELLED");
  });

  it("aborts the signal when the lease is gone (the run was terminated)", async () => {
    const handle = await client.start(callUntilAborted, { instanceId: "hb-terminate" });
    await waitFor(() => seen.get(handle.runId!)?.length, { message: "the activity to start" });
    await handle.terminate("operator");
    const reason = await waitFor(() => seen.get(handle.runId!)![0]!.abortReason, { message: "the signal to abort" });
    expect((reason as Error).message).toMatch(/lost the lease of this attempt/);
  });
});

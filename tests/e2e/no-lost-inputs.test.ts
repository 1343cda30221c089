/**
 * Inputs that arrive while a run's last workflow task is in flight reach the
 * workflow code, with a real SDK worker: an event sent as the run completes
 * (the server refuses that completion with ABORTED, the worker drops its
 * cached run and replays), and a cancellation sent as the run continues as
 * new (it moves to the new run). Also what a zero event-wait timeout and an
 * absurd sleepUntil date do.
 *
 * To land an input exactly while the final task is in flight, the run is a
 * child and the test holds its parent's row lock: a child's completion that
 * ends it locks the parent first (ancestor before descendant), so it waits
 * there, task claimed and commands sent, while SendEvent and CancelRun (which
 * lock only the child) go through.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChildWorkflowFailure, EventWaitTimeoutError, type WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import postgres from "postgres";
import { startHarness, type Harness } from "../support/harness.js";

/** Reads an event without waiting: a received event's wait is already resolved and wins the race. */
function receivedOr<T>(ctx: WorkflowContext, eventId: string, otherwise: T): Promise<unknown> {
  return Promise.race([ctx.waitForEvent(eventId), Promise.resolve(otherwise)]);
}

async function lateReader(ctx: WorkflowContext) {
  await ctx.waitForEvent("go");
  return { late: await receivedOr(ctx, "late", "not received") };
}

async function restless(ctx: WorkflowContext, round: number) {
  if (round === 0) {
    await ctx.waitForEvent("go");
    return ctx.continueAsNew(1);
  }
  await ctx.sleep("1h");
  return "slept an hour";
}

async function parent(ctx: WorkflowContext, input: { workflow: string; childInput: unknown }) {
  try {
    return await ctx.child(input.workflow, input.childInput, { instanceId: `${ctx.info.instanceId}-child` });
  } catch (err) {
    if (err instanceof ChildWorkflowFailure) return { childStatus: err.status };
    throw err;
  }
}

async function quickLook(ctx: WorkflowContext) {
  try {
    return { got: await ctx.waitForEvent("maybe", { timeout: 0 }) };
  } catch (err) {
    if (err instanceof EventWaitTimeoutError) return { timedOut: err.eventId };
    throw err;
  }
}

async function sleepsUntil(ctx: WorkflowContext, unixSeconds: number) {
  // The classic slip: seconds where milliseconds are expected, i.e. January 1970.
  return ctx.sleepUntil(new Date(unixSeconds)).then(
    () => "slept",
    (err: Error) => `${err.name}: ${err.message}`,
  );
}

describe("no lost inputs, end to end", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  let sql: postgres.Sql;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ lateReader, restless, parent, quickLook, sleepsUntil });
    sql = postgres(h.db.url, { max: 2, onnotice: () => {} });
  });
  afterAll(async () => {
    await sql?.end();
    await h?.close();
  });

  /** Server connections waiting for a row lock (here: the child's completion, for the parent's row). */
  async function lockWaiters(): Promise<number> {
    const [row] = await sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and application_name like 'dex-server %' and wait_event_type = 'Lock'`;
    return row!.n;
  }

  /** Starts parent -> child and waits until the child waits for "go". */
  async function startFamily(instanceId: string, workflow: string, childInput: unknown) {
    const handle = await h.client.start(parent, { instanceId, input: { workflow, childInput } });
    const child = h.client.getHandle({ instanceId: `${instanceId}-child` });
    await waitFor(async () => (await child.describe()).pendingEventWaits.some((w) => w.eventId === "go"), {
      message: "the child to wait for go",
    });
    return { handle, child };
  }

  /**
   * Sends "go" to the child while holding the parent's row: the child's last task runs and its
   * completion waits for that row; `meanwhile` runs then, with the task in flight.
   */
  async function whileLastTaskInFlight(parentRunId: string, child: { sendEvent(id: string): Promise<unknown> }, meanwhile: () => Promise<void>) {
    await sql.begin(async (tx) => {
      await tx`select 1 from dex.runs where id = ${parentRunId} for no key update`;
      await child.sendEvent("go");
      await waitFor(async () => (await lockWaiters()) >= 1, { message: "the child's completion to wait for the parent's row" });
      await meanwhile();
    });
  }

  it("an event sent while the run's final task is in flight reaches the workflow code", async () => {
    const { handle, child } = await startFamily("late-event", "lateReader", undefined);
    await whileLastTaskInFlight(handle.runId!, child, async () => {
      expect((await child.sendEvent("late", "hello")).duplicate).toBe(false);
    });
    expect(await handle.result({ signal: AbortSignal.timeout(20_000) })).toEqual({ late: "hello" });

    const history = await child.history();
    // The refused completion wrote nothing (it had issued a wait for "late"): the one block holds
    // both events, the marker and the result.
    expect(history.slice(-4).map((e) => e.attributes.case)).toEqual([
      "externalEventReceived",
      "externalEventReceived",
      "workflowTaskCompleted",
      "runCompleted",
    ]);
    const received = history.flatMap((e) => (e.attributes.case === "externalEventReceived" ? [e.attributes.value.eventId] : []));
    expect(received).toEqual(["go", "late"]);
    expect(history.filter((e) => e.attributes.case === "eventWaitStarted")).toHaveLength(1); // "go" only
  });

  it("a cancellation sent while the final task continues as new reaches the new run", async () => {
    const { handle, child } = await startFamily("late-cancel", "restless", 0);
    const firstRunId = (await child.describe()).runId;
    await whileLastTaskInFlight(handle.runId!, child, async () => {
      await child.cancel("stop looping");
    });
    expect(await handle.result({ signal: AbortSignal.timeout(20_000) })).toEqual({ childStatus: "CANCELLED" });

    const runs = (await h.client.list({ instanceId: "late-cancel-child" })).runs;
    expect(runs.map((r) => r.status).sort()).toEqual(["CANCELLED", "CONTINUED_AS_NEW"]);
    const next = runs.find((r) => r.runId !== firstRunId)!;
    const kinds = (await h.client.getHandle({ runId: next.runId }).history()).map((e) => e.attributes.case);
    expect(kinds.slice(0, 2)).toEqual(["runStarted", "cancelRequested"]);
    expect(kinds.at(-1)).toBe("runCancelled");
  });

  it("waitForEvent with a zero timeout times out at once, or returns an event already received", async () => {
    const alone = await h.client.start(quickLook, { instanceId: "zero-timeout-1", input: undefined });
    expect(await alone.result({ signal: AbortSignal.timeout(20_000) })).toEqual({ timedOut: "maybe" });
    const withEvent = await h.client.sendEventWithStart(quickLook, { instanceId: "zero-timeout-2", input: undefined, eventId: "maybe", payload: 7 });
    expect(await withEvent.handle.result({ signal: AbortSignal.timeout(20_000) })).toEqual({ got: 7 });
  });

  it("sleepUntil with a date absurdly far from now rejects in the workflow instead of failing its task forever", async () => {
    const handle = await h.client.start(sleepsUntil, { instanceId: "sleep-until-1970", input: 1_700_000_000 });
    expect(await handle.result({ signal: AbortSignal.timeout(20_000) })).toMatch(/^RangeError: ctx\.sleepUntil: 1970-01-20T.* more than 10 years/);
  });
});

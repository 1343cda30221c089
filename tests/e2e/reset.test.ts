/**
 * ResetRun (issue 15, Done-when 3; docs/decisions/0026-reset.md): reset to each kind of point, on a
 * FAILED and on a running run, external events re-delivered, the new run completes on a real worker,
 * the chain in describe and history, request-id idempotency, bad points.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { ApplicationFailure, DexError, type WorkflowContext } from "@dex/sdk";
import { startHarness, type Harness } from "../support/harness.js";
import { runDex } from "../support/server-process.js";

const calls = new Map<string, number>();
let bugFixed = false;

const activities = {
  async step(name: string): Promise<string> {
    calls.set(name, (calls.get(name) ?? 0) + 1);
    return `did ${name}`;
  },
};

/** A deployed bug: fails after its second activity until `bugFixed` (a deploy of the fix). */
async function buggy(ctx: WorkflowContext, input: { id: string }) {
  const acts = ctx.activities<typeof activities>();
  const a = await acts.step(`${input.id}-a`);
  const go = await ctx.waitForEvent<string>("go");
  const b = await acts.step(`${input.id}-b-${go}`);
  if (!bugFixed) throw ApplicationFailure.nonRetryable("bug in the workflow", "Bug");
  return [a, go, b];
}

/** Stays open between its two events. */
async function twoEvents(ctx: WorkflowContext, input: { id: string }) {
  const a = await ctx.activities<typeof activities>().step(`${input.id}-a`);
  const x = await ctx.waitForEvent<string>("x");
  const y = await ctx.waitForEvent<string>("y");
  return [a, x, y];
}

function kinds(history: Array<{ attributes: { case?: string } }>): string[] {
  return history.map((e) => e.attributes.case ?? "?");
}

async function dexCode(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof DexError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error("expected a DexError");
}

describe("ResetRun", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ buggy, twoEvents });
    h.activityWorker(activities);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("resets a FAILED run to its last workflow task after the fix: the last activity runs again, the new run completes", async () => {
    bugFixed = false;
    const old = await h.client.start(buggy, { instanceId: "buggy-1", input: { id: "f" } });
    await waitFor(async () => (await old.describe()).pendingEventWaits.length === 1, { message: "the wait for go" });
    await old.sendEvent("go", "now");
    await waitFor(async () => (await old.describe()).status === "FAILED", { message: "the run to fail" });
    expect(calls.get("f-b-now")).toBe(1);

    bugFixed = true;
    const reset = await old.reset({ to: "last-workflow-task", reason: "fixed the bug" });
    expect(await reset.result()).toEqual(["did f-a", "now", "did f-b-now"]);
    // The last task's input (b's result) was after the point: b ran again; a, before it, did not.
    expect(calls.get("f-b-now")).toBe(2);
    expect(calls.get("f-a")).toBe(1);

    const oldDescription = await old.describe();
    expect(oldDescription.status).toBe("FAILED"); // an ended run keeps its end
    expect(oldDescription.resetToRunId).toBe(reset.runId);
    const newDescription = await reset.describe();
    expect(newDescription.resetFromRunId).toBe(old.runId);
    const history = await reset.history();
    const started = history[0]!.attributes;
    expect(started.case === "runStarted" && started.value.resetFromRunId).toBe(old.runId);
    const oldHistory = await old.history();
    // Kept: everything before the last task's inputs, the same events.
    const kept = kinds(oldHistory).slice(1, kinds(oldHistory).lastIndexOf("workflowTaskCompleted") - 1);
    expect(kinds(history).slice(1, 1 + kept.length)).toEqual(kept);
    expect(kinds(history).at(-1)).toBe("runCompleted");
  });

  it("resets a running run to its first workflow task: the old run is TERMINATED, its events are re-delivered in order", async () => {
    const old = await h.client.start(twoEvents, { instanceId: "two-1", input: { id: "r" } });
    await waitFor(async () => (await old.describe()).pendingEventWaits.length === 1, { message: "the wait for x" });
    await old.sendEvent("x", "ex");
    await waitFor(async () => (await old.describe()).pendingEventWaits.some((w) => w.eventId === "y"), { message: "the wait for y" });

    const reset = await old.reset({ to: "first-workflow-task", reason: "replay it", requestId: "reset-two-1" });
    const oldDescription = await old.describe();
    expect(oldDescription.status).toBe("TERMINATED");
    expect(oldDescription.resetToRunId).toBe(reset.runId);
    const last = (await old.history()).at(-1)!.attributes;
    expect(last.case === "runTerminated" && last.value.resetToRunId).toBe(reset.runId);

    // The same request id: the same new run, nothing else changes.
    const again = await old.reset({ to: "first-workflow-task", requestId: "reset-two-1" });
    expect(again.runId).toBe(reset.runId);

    // x went to the new run's inbox; the new run waits for y like the old one did.
    await waitFor(async () => (await reset.describe()).pendingEventWaits.some((w) => w.eventId === "y"), { message: "the new run to wait for y" });
    await h.client.getHandle({ instanceId: "two-1" }).sendEvent("y", "why");
    expect(await reset.result()).toEqual(["did r-a", "ex", "why"]);
    expect(calls.get("r-a")).toBe(2); // after the point: scheduled again by replay
    const history = kinds(await reset.history());
    expect(history.filter((k) => k === "externalEventReceived")).toHaveLength(2);
    expect(history.filter((k) => k === "runStarted")).toHaveLength(1);

    // The old run cannot be reset while the instance has another open run... which it no longer has.
    const third = await old.reset({ to: "first-workflow-task" });
    expect(await third.describe()).toMatchObject({ resetFromRunId: old.runId });
    const blocked = await dexCode(old.reset({ to: "first-workflow-task" }));
    expect(blocked.code).toBe("FAILED_PRECONDITION");
    expect(blocked.message).toContain("already has an open run");
    await third.terminate("done");
  });

  it("resets to event:N (a marker) keeping the activity before it; refuses points that are not boundaries", async () => {
    bugFixed = true;
    const old = await h.client.start(twoEvents, { instanceId: "two-2", input: { id: "e" } });
    await waitFor(async () => (await old.describe()).pendingEventWaits.length === 1, { message: "the wait for x" });
    const history = await old.history();
    const markers = history.filter((e) => e.attributes.case === "workflowTaskCompleted").map((e) => Number(e.sequence));
    expect(markers.length).toBe(2); // start -> schedule a; a's result -> wait for x
    const scheduled = Number(history.find((e) => e.attributes.case === "activityScheduled")!.sequence);

    const bad = await dexCode(old.reset({ to: { event: scheduled } }));
    expect(bad.code).toBe("INVALID_ARGUMENT");
    expect(bad.message).toContain(`nearest valid points are event:${markers[0]} or event:${markers[1]}`);
    expect((await dexCode(old.reset({ to: { event: 999 } }))).code).toBe("INVALID_ARGUMENT");
    expect((await dexCode(old.reset({ to: { event: 0 } }))).code).toBe("INVALID_ARGUMENT");
    expect((await old.describe()).status).toBe("RUNNING"); // refusals change nothing

    // Before the second task: a's result is after the point, so a runs again (re-scheduled at reset).
    const reset = await old.reset({ to: { event: markers[1]! } });
    await waitFor(async () => (await reset.describe()).pendingEventWaits.length === 1, { message: "the new run to wait for x" });
    expect(calls.get("e-a")).toBe(2);
    await reset.sendEvent("x", "1");
    await reset.sendEvent("y", "2");
    expect(await reset.result()).toEqual(["did e-a", "1", "2"]);
  });

  it("dex workflow reset: resets by instance id, shows the chain, and refuses a bad --to in one line", async () => {
    const dex = (...args: string[]) => runDex(["workflow", ...args, "--address", h.server.address]);
    const old = await h.client.start(twoEvents, { instanceId: "cli-1", input: { id: "c" } });
    await waitFor(async () => (await old.describe()).pendingEventWaits.length === 1, { message: "the wait for x" });

    const bad = await dex("reset", "cli-1", "--to", "event:x");
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toContain("--to must be first-workflow-task, last-workflow-task or event:N");
    const notAPoint = await dex("reset", "cli-1", "--to", "event:3");
    expect(notAPoint.code).not.toBe(0);
    expect(notAPoint.stderr).toContain("nearest valid points are event:2 or event:5");

    const reset = await dex("reset", "cli-1", "--to", "last-workflow-task", "--reason", "from the CLI", "--request-id", "cli-r1", "--json");
    expect(reset.code).toBe(0);
    const view = JSON.parse(reset.stdout) as { runId: string; created: boolean };
    expect(view.created).toBe(true);
    const again = JSON.parse((await dex("reset", old.runId!, "--to", "last-workflow-task", "--request-id", "cli-r1", "--json")).stdout) as { runId: string; created: boolean };
    expect(again).toMatchObject({ runId: view.runId, created: false });

    const described = await dex("describe", view.runId);
    expect(described.stdout).toMatch(new RegExp(`reset from:\\s+${old.runId}`));
    expect(described.stdout).toMatch(/reset reason:\s+from the CLI/);
    expect((await dex("describe", old.runId!)).stdout).toMatch(new RegExp(`reset to:\\s+${view.runId}`));
    expect((await dex("history", old.runId!)).stdout).toContain(`reset to run ${view.runId}`);
    expect((await dex("history", view.runId)).stdout).toContain(`reset from run ${old.runId}`);
    await h.client.getHandle({ runId: view.runId }).terminate("done");
  });

  it("concurrent resets with one request id create one run; an open keyed run hands its slot to the new run", async () => {
    const first = await h.client.start(twoEvents, { instanceId: "keyed-1", input: { id: "k1" }, concurrencyKey: "reset-key" });
    const second = await h.client.start(twoEvents, { instanceId: "keyed-2", input: { id: "k2" }, concurrencyKey: "reset-key" });
    await waitFor(async () => (await first.describe()).pendingEventWaits.length === 1, { message: "the first keyed run to wait for x" });
    expect((await second.describe()).status).toBe("CREATED"); // waiting for the key's one slot

    const waiting = await dexCode(second.reset({ to: "first-workflow-task" }));
    expect(waiting.code).toBe("FAILED_PRECONDITION");
    expect(waiting.message).toContain("waiting for a slot");

    const [a, b] = await Promise.all([
      first.reset({ to: "last-workflow-task", requestId: "keyed-reset" }),
      first.reset({ to: "last-workflow-task", requestId: "keyed-reset" }),
    ]);
    expect(a.runId).toBe(b.runId);
    const runs = (await h.client.list({ instanceId: "keyed-1" })).runs;
    expect(runs.map((r) => r.status).sort()).toEqual(["RUNNING", "TERMINATED"]);
    expect(runs.filter((r) => r.status === "RUNNING" || r.status === "CREATED")).toHaveLength(1);
    // The new run took the old one's slot: it runs, and the other run of the key still waits.
    await waitFor(async () => (await a.describe()).pendingEventWaits.length === 1, { message: "the new keyed run to wait for x" });
    expect((await second.describe()).status).toBe("CREATED");
    await a.terminate("done");
    await waitFor(async () => (await second.describe()).status === "RUNNING", { message: "the slot to pass to the waiting run" });
    await second.terminate("done");
    const ended = await dexCode(first.reset({ to: "first-workflow-task" }));
    expect(ended.code).toBe("FAILED_PRECONDITION");
    expect(ended.message).toContain("concurrency key");
  });
});


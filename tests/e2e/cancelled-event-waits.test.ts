/**
 * An event wait without a time-out that a cancellation scope cancels
 * (decision 0022, "Dropped waits"): DescribeRun stops listing it in
 * `pending_event_waits` and `waiting_reason` (before, it stayed there until
 * an event of its name came), the run goes on and completes, and an event of
 * that name sent later is kept for a later wait, not swallowed by the
 * cancelled one. A real server, worker and client over gRPC.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";

/** Waits for "approval" in a scope, cancels the scope at "drop-wait", then waits for "go-on" and "approval" again. */
async function droppedWait(ctx: WorkflowContext) {
  const scope = ctx.newCancellationScope();
  const first = scope.run(() => ctx.waitForEvent("approval")).then(
    () => "approved",
    (err: Error) => err.name,
  );
  await ctx.waitForEvent("drop-wait");
  scope.cancel("approval no longer needed");
  const dropped = await first;
  await ctx.waitForEvent("go-on");
  return { dropped, later: await ctx.waitForEvent("approval") };
}

describe("a cancelled event wait", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ droppedWait });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("disappears from describe; the run completes and a later event goes to a later wait", async () => {
    const handle = await h.client.start(droppedWait, { instanceId: "dropped-wait-1" });
    const waitNames = (d: { pendingEventWaits: { eventName: string }[] }) => d.pendingEventWaits.map((w) => w.eventName).sort();
    await waitFor(async () => JSON.stringify(waitNames(await handle.describe())) === '["approval","drop-wait"]', {
      message: "describe to list the waits for approval and drop-wait",
    });

    await handle.signal("drop-wait");
    // Without the drop, "approval" stays listed (and named in the reason) until an approval event comes.
    const after = await waitFor(
      async () => {
        const d = await handle.describe();
        return JSON.stringify(waitNames(d)) === '["go-on"]' && d.waitingReason === 'waiting for event "go-on"' ? d : undefined;
      },
      { message: 'describe to list only the wait for "go-on"' },
    );
    expect(after.status).toBe("RUNNING");

    // No wait for approval is open now: the event is received and kept for the code's next wait.
    await handle.signal("approval", "yes");
    await waitFor(
      async () => {
        const d = await handle.describe();
        return d.receivedEvents.some((c) => c.eventName === "approval" && c.inHistory === 1) && JSON.stringify(waitNames(d)) === '["go-on"]';
      },
      { message: "the approval event to reach history with go-on still the only wait" },
    );

    await handle.signal("go-on");
    expect(await handle.result()).toEqual({ dropped: "CancelledFailure", later: "yes" });

    // The drop is recorded as cancel_timer's event with the wait's seq (decision 0022).
    const history = await handle.history();
    const approvalWait = history.find((e) => e.attributes.case === "eventWaitStarted" && e.attributes.value.eventName === "approval");
    expect(approvalWait?.attributes.case).toBe("eventWaitStarted");
    const seq = approvalWait?.attributes.case === "eventWaitStarted" ? approvalWait.attributes.value.seq : -1;
    expect(history.filter((e) => e.attributes.case === "timerCancelled" && e.attributes.value.seq === seq)).toHaveLength(1);
    expect(history.filter((e) => e.attributes.case === "eventWaitStarted")).toHaveLength(3);
  });
});

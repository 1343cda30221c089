/**
 * Sticky routing on a paused queue (decision 0009, "Wake-ups"): a poll whose
 * claim came back empty wakes, by name, the owners of the sticky tasks it left
 * alone. On a paused queue every claim is empty, so two owners parked there
 * would wake each other in a loop (a claim and a read each, as fast as the
 * database answers) until the fallback. A wake passed by name stops at the
 * worker it was passed to: this test counts the claims the two owners' polls
 * make while the queue is paused, over a window that ends when a timer on
 * another run has fired (a condition waited for with a deadline, not a sleep).
 *
 * Claims are counted in-process: every round of a long poll subscribes to its
 * queue, then claims once (engine/long-poll.ts), so subscriptions per worker
 * are claims per worker. (The parking helper of helpers.ts is not used here:
 * its wrapper hides Subscription.byName, which is what stops the loop.)
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { TaskQueueType } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { Wakeups, type Subscription } from "../src/engine/wakeups.js";
import {
  json,
  PARK,
  pollActivityOf,
  pollWorkflowTaskOf,
  scheduleActivity,
  startHarness,
  startWith,
  uniqueId,
  WAKES_ONLY,
  type Harness,
} from "./helpers.js";

const WF = TaskQueueType.WORKFLOW;

function startTimer(seq: number, ms: number) {
  return { command: { case: "startTimer" as const, value: { seq, duration: { seconds: 0n, nanos: ms * 1e6 } } } };
}

/** Claims (subscriptions) and parks per worker on one queue, the subscriptions passed through whole. */
function watchClaims(queue: string) {
  const claims = new Map<string, number>();
  const parks = new Map<string, number>();
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  const subscribe = Wakeups.prototype.subscribeQueue;
  const spy = vi.spyOn(Wakeups.prototype, "subscribeQueue").mockImplementation(function (this: Wakeups, type: string, q: string, workerId?: string) {
    const inner = subscribe.call(this, type, q, workerId);
    if (q !== queue || workerId === undefined) return inner;
    bump(claims, workerId);
    const watched: Subscription = {
      get woken() {
        bump(parks, workerId);
        return inner.woken;
      },
      get fired() {
        return inner.fired;
      },
      get byName() {
        return inner.byName;
      },
      cancel: () => inner.cancel(),
    };
    return watched;
  });
  return {
    claims: (workerId: string) => claims.get(workerId) ?? 0,
    parks: (workerId: string) => parks.get(workerId) ?? 0,
    restore: () => spy.mockRestore(),
  };
}

describe("sticky routing on a paused queue", () => {
  let h: Harness;
  let q: string;
  let watch: ReturnType<typeof watchClaims>;
  beforeAll(async () => {
    // No fallback tick, a fallback no test waits out: nothing but the code's own wakes moves a poll.
    h = await startHarness({ ...WAKES_ONLY, stickyFallbackMs: 600_000 });
    q = uniqueId("paused").slice(0, 60);
    await h.queues.createTaskQueue({ name: q, type: WF });
    watch = watchClaims(q);
  });
  afterAll(async () => {
    watch?.restore();
    await h?.close();
  });

  it("two owners parked on it do not wake each other in a loop", async () => {
    // Two runs on q, each sticky to its owner, each with a fresh next task (an activity result)
    // that the pause keeps in the queue.
    const r1 = await startWith(h, [scheduleActivity(1, "a", { taskQueue: "default" })], { workerId: "owner-1", taskQueue: q });
    const r2 = await startWith(h, [scheduleActivity(1, "a", { taskQueue: "default" })], { workerId: "owner-2", taskQueue: q });
    await h.queues.pauseTaskQueue({ name: q, type: WF });
    for (const runId of [r1, r2]) {
      const a = await pollActivityOf(h, runId, 1);
      await h.worker.completeActivityTask({ taskToken: a.taskToken, result: json("A") });
    }
    const poll = (workerId: string) => h.worker.pollWorkflowTasks({ taskQueue: q, workerId, maxTasks: 10, maxWait: PARK });

    // owner-1 parks; owner-2's first claim is empty and wakes owner-1 by name (r1 is owner-1's);
    // owner-1 claims once more, passes nothing on, and parks again.
    const first = poll("owner-1");
    await waitFor(() => watch.parks("owner-1") >= 1, { message: "owner-1's poll to park" });
    const second = poll("owner-2");
    await waitFor(() => watch.parks("owner-2") >= 1 && watch.parks("owner-1") >= 2, {
      message: "owner-2's poll to park, and owner-1's to park again after the wake passed to it",
    });

    // A queue wake while paused: a new run's task wakes the oldest parked poll (owner-1), whose empty
    // claim passes the wake to owner-2 (r2 is owner-2's), whose empty claim must pass it no further.
    const before = { one: watch.claims("owner-1"), two: watch.claims("owner-2") };
    await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("paused-new"), taskQueue: q });
    await waitFor(() => watch.parks("owner-2") >= 2, { message: "owner-2's poll to park again after the wake passed to it" });

    // The window: until a 300 ms timer of another run has fired and its task has been polled.
    const timed = await startWith(h, [startTimer(1, 300)], { workerId: "timekeeper" });
    const fired = await pollWorkflowTaskOf(h, timed, "timekeeper");
    await h.worker.completeWorkflowTask({ taskToken: fired.taskToken, commands: [] });
    const during = { one: watch.claims("owner-1") - before.one, two: watch.claims("owner-2") - before.two };
    // Exactly the claim of the woken poll and the one it passed the wake to; a loop makes hundreds.
    expect(during).toEqual({ one: 1, two: 1 });

    // Resumed, each owner gets its own run's task (the cache's, no history).
    await h.queues.resumeTaskQueue({ name: q, type: WF });
    const [got1, got2] = await Promise.all([first, second]);
    expect(got1.tasks.map((t) => t.runId)).toContain(r1);
    expect(got2.tasks.map((t) => t.runId)).toContain(r2);
    for (const task of [...got1.tasks, ...got2.tasks].filter((t) => t.runId === r1 || t.runId === r2)) expect(task.history).toEqual([]);
  });
});

/**
 * Replay core, no I/O: changed workflow code is caught for every kind of
 * command (timers, event waits, children, side effects, status, labels,
 * continue-as-new, cancel commands) and for inputs that name a seq the code
 * used for something else. Each history is recorded by the original code.
 */
import { describe, expect, it } from "vitest";
import { NonDeterminismError } from "../src/common/errors.js";
import type { Workflow } from "../src/workflow/types.js";
import { FakeRun, inputs } from "./history-builder.js";

/** Records a history with `original`, feeding `steps` as the inputs of successive tasks. */
async function record(original: Workflow, steps: Array<Parameters<FakeRun["send"]>> = []): Promise<FakeRun> {
  const run = new FakeRun();
  const ex = await run.replayed(original);
  await run.task(ex);
  for (const step of steps) {
    run.send(...step);
    await run.task(ex);
  }
  return run;
}

async function divergence(run: FakeRun, changed: Workflow): Promise<NonDeterminismError> {
  const error = await run.replayed(changed).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(NonDeterminismError);
  return error as NonDeterminismError;
}

describe("non-determinism of the new command kinds", () => {
  it("a timer replaced by an activity", async () => {
    const run = await record(async (ctx) => ctx.sleep("1m"));
    const error = await divergence(run, async (ctx) => ctx.executeActivity("wait"));
    expect(error.message).toContain('history event 3: recorded timer_started(seq 1), but the workflow code produced activity_scheduled(seq 1, "wait")');
    expect(error).toMatchObject({ eventSequence: 3, eventKind: "timer_started", recorded: "timer_started(seq 1)", produced: 'activity_scheduled(seq 1, "wait")' });
  });

  it("an event wait for a renamed event", async () => {
    const run = await record(async (ctx) => ctx.waitForEvent("approval"));
    const error = await divergence(run, async (ctx) => ctx.waitForEvent("approve"));
    expect(error.message).toContain('recorded event_wait_started(seq 1, "approval"), but the workflow code produced event_wait_started(seq 1, "approve")');
  });

  it("a child of another workflow", async () => {
    const run = await record(async (ctx) => ctx.child("shipment", null, { instanceId: "s" }));
    const error = await divergence(run, async (ctx) => ctx.child("courier", null, { instanceId: "s" }));
    expect(error.message).toContain('recorded child_run_scheduled(seq 1, "shipment"), but the workflow code produced child_run_scheduled(seq 1, "courier")');
  });

  it("a side effect removed", async () => {
    const run = await record(async (ctx) => ctx.executeActivity("use", await ctx.sideEffect(() => 7)));
    const error = await divergence(run, async (ctx) => ctx.executeActivity("use", 7));
    expect(error.message).toContain('recorded side_effect_recorded(seq 1), but the workflow code produced activity_scheduled(seq 1, "use")');
  });

  it("a side effect added, without running its function", async () => {
    const run = await record(async (ctx) => ctx.executeActivity("use"));
    let calls = 0;
    const error = await divergence(run, async (ctx) => ctx.executeActivity("use", await ctx.sideEffect(() => ++calls)));
    expect(error.message).toContain('recorded activity_scheduled(seq 1, "use"), but the workflow code produced side_effect_recorded(seq 1)');
    expect(calls).toBe(0);
  });

  it("a custom status removed, and labels added", async () => {
    const run = await record(async (ctx) => {
      ctx.setStatus("working");
      return ctx.executeActivity("work");
    });
    const removed = await divergence(run, async (ctx) => ctx.executeActivity("work"));
    expect(removed.message).toContain('recorded custom_status_set(), but the workflow code produced activity_scheduled(seq 1, "work")');
    const added = await divergence(run, async (ctx) => {
      ctx.setStatus("working");
      ctx.upsertLabels({ stage: "1" });
      return ctx.executeActivity("work");
    });
    expect(added.message).toContain('recorded activity_scheduled(seq 1, "work"), but the workflow code produced labels_upserted()');
  });

  it("continue-as-new replaced by a return", async () => {
    const run = await record(async (ctx) => ctx.continueAsNew({ n: 1 }));
    const error = await divergence(run, async () => "done");
    expect(error.message).toContain("recorded run_continued_as_new(), but the workflow code produced run_completed()");
  });

  it("a cancellable call moved into a non-cancellable scope", async () => {
    const run = await record(async (ctx) => ctx.executeActivity("slow"), [[inputs.cancelRequested()]]);
    const error = await divergence(run, async (ctx) => ctx.nonCancellable(() => ctx.executeActivity("slow")));
    expect(error.message).toContain("history event 6: recorded activity_cancel_requested(seq 1), but the workflow code produced no such command");
  });

  it("a child switched to the abandon policy, which sends no cancel command", async () => {
    const run = await record(async (ctx) => ctx.child("sub", null, { instanceId: "sub" }), [[inputs.cancelRequested()]]);
    const error = await divergence(run, async (ctx) => ctx.child("sub", null, { instanceId: "sub", parentClosePolicy: "abandon" }));
    expect(error.message).toContain("recorded child_run_cancel_requested(seq 1), but the workflow code produced run_cancelled()");
  });

  it("a timer cancelled by a cancellation that the changed code no longer sees", async () => {
    const run = await record(
      async (ctx) => {
        await ctx.sleep("1h").catch(() => undefined);
        return "done";
      },
      [[inputs.cancelRequested()]],
    );
    const error = await divergence(run, async (ctx) => {
      await ctx.nonCancellable(() => ctx.sleep("1h"));
      return "done";
    });
    expect(error.message).toContain("recorded timer_cancelled(seq 1), but the workflow code produced no such command");
  });
});

describe("inputs that do not fit the code", () => {
  it.each([
    { name: "timer_fired for an activity's seq", input: inputs.timerFired(1), message: /timer_fired for seq 1, but the workflow code issued a activity with that seq/ },
    { name: "a time-out for an activity's seq", input: inputs.eventWaitTimedOut(1), message: /event_wait_timed_out for seq 1, but the workflow code issued a activity/ },
    { name: "a child outcome for a seq never issued", input: inputs.childRunCompleted(4), message: /child_run_ended for seq 4, but the workflow code issued no command with that seq/ },
  ])("$name fails the task", async ({ input, message }) => {
    const run = new FakeRun();
    const ex = await run.replayed(async (ctx) => ctx.executeActivity("a"));
    await run.task(ex);
    run.send(input);
    const error = await run.task(ex).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NonDeterminismError);
    expect((error as Error).message).toMatch(message);
  });
});

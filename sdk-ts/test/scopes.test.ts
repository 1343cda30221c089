/**
 * Replay core, no I/O: cancellation scopes. A scope cancelled by workflow code
 * rejects its pending awaits and sends their cancel commands in the same
 * workflow task, mid-run; nested scopes, nonCancellable shields and run
 * cancellation compose; every recorded history replays.
 */
import { describe, expect, it } from "vitest";
import { RunStatus, type HistoryEvent } from "@dex/proto";
import { CancelledFailure } from "../src/common/errors.js";
import { guardedRunner, installDeterminismGuard } from "../src/worker/determinism-guard.js";
import type { Workflow } from "../src/workflow/types.js";
import { FakeRun, inputs, resultOf, summarize } from "./history-builder.js";

installDeterminismGuard();

const outcome = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    (value) => value,
    (e: Error) => `${e.name}: ${e.message}`,
  );

async function expectReplays(run: FakeRun, wf: Workflow): Promise<void> {
  await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  await expect(run.replayed(wf, guardedRunner)).resolves.toMatchObject({ finished: true });
}

/** The run as an SDK that did not issue some commands recorded it: those events removed, the rest renumbered. */
function withoutEvents(run: FakeRun, drop: (e: HistoryEvent) => boolean): FakeRun {
  const copy = new FakeRun();
  const kept = run.history.filter((e) => !drop(e));
  expect(kept.length).toBeLessThan(run.history.length);
  copy.history.splice(0, copy.history.length, ...kept.map((e, i) => ({ ...e, sequence: BigInt(i + 1) })));
  return copy;
}

describe("cancellation scopes", () => {
  // An activity raced against a timer, each in its own scope; the loser is cancelled.
  const race: Workflow = async (ctx) => {
    const work = ctx.newCancellationScope();
    const clock = ctx.newCancellationScope();
    const activity = work.run(() => ctx.executeActivity<string>("slow"));
    const timer = clock.run(() => ctx.sleep("1m"));
    const winner = await Promise.race([activity.then(() => "activity"), timer.then(() => "timer")]);
    (winner === "timer" ? work : clock).cancel(`${winner} won`);
    return { winner, activity: await outcome(activity), timer: await outcome(timer), cancelled: [work.cancelled, clock.cancelled] };
  };

  it("cancels the losing activity mid-run, in the task where the timer won", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(race);
    expect(summarize(await run.task(ex))).toEqual(["schedule slow#1", "timer#2"]);
    run.send(inputs.timerFired(2));
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["cancel activity#1", "complete"]);
    expect(resultOf(commands)).toEqual({
      winner: "timer",
      activity: "CancelledFailure: scope cancelled: timer won",
      timer: undefined,
      cancelled: [true, false],
    });
    await expectReplays(run, race);
  });

  it("cancels the losing timer when the activity wins", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(race);
    await run.task(ex);
    run.send(inputs.activityCompleted(1, "done"));
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["cancel timer#2", "complete"]);
    expect(resultOf(commands)).toMatchObject({ winner: "activity", activity: "done", timer: "CancelledFailure: scope cancelled: activity won" });
    await expectReplays(run, race);
  });

  // Every kind of await in one scope; the run goes on after cancelling it.
  const cancelAll: Workflow = async (ctx) => {
    const settled = ctx.cancellable(async (scope) => {
      const all = Promise.allSettled([
        ctx.executeActivity("slow"),
        ctx.sleep("1h"),
        ctx.waitForEvent("go", { timeout: "1d" }),
        ctx.child("sub", null, { instanceId: "sub-1" }),
        ctx.child("free", null, { instanceId: "free-1", parentClosePolicy: "abandon" }),
        ctx.condition(() => false, { timeout: "1h" }),
      ]);
      await ctx.waitForEvent("stop");
      scope.cancel("not needed");
      const later = await outcome(ctx.executeActivity("started after the cancel"));
      return { outcomes: (await all).map((s) => (s.status === "fulfilled" ? s.value : (s.reason as Error).name)), later };
    });
    const result = await settled;
    return { ...result, after: await ctx.executeActivity("after") };
  };

  it("sends every cancel command of the scope in the task that cancels it, and the run goes on", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(cancelAll);
    expect(summarize(await run.task(ex))).toEqual([
      "schedule slow#1",
      "timer#2",
      "wait go#3",
      "child sub#4",
      "child free#5",
      "timer#6",
      "wait stop#7",
    ]);
    run.send(inputs.childRunStarted(4), inputs.externalEvent("stop"));
    // Seq order; the timed event wait drops its time-out, the abandoned child gets nothing. The later activity is not issued.
    expect(summarize(await run.task(ex))).toEqual([
      "cancel activity#1",
      "cancel timer#2",
      "cancel timer#3",
      "cancel child#4",
      "cancel timer#6",
      "schedule after#8",
    ]);
    // Late outcomes of cancelled work are ignored.
    run.send(inputs.activityCompleted(1, "late"), inputs.childRunEnded(4, RunStatus.CANCELLED), inputs.activityCompleted(8, "ok"));
    expect(resultOf(await run.task(ex))).toEqual({
      outcomes: Array(6).fill("CancelledFailure"),
      later: "CancelledFailure: scope cancelled: not needed",
      after: "ok",
    });
    await expectReplays(run, cancelAll);
  });

  const nested: Workflow = async (ctx, input: { cancel: "outer" | "inner" }) => {
    const outer = ctx.newCancellationScope();
    let inner!: ReturnType<typeof ctx.newCancellationScope>;
    const inOuter = outer.run(async () => {
      inner = ctx.newCancellationScope();
      const inInner = inner.run(() => ctx.executeActivity("inner-work"));
      const shielded = ctx.nonCancellable(() => ctx.executeActivity("shielded"));
      return Promise.all([outcome(ctx.executeActivity("outer-work")), outcome(inInner), outcome(shielded)]);
    });
    await ctx.waitForEvent("cancel");
    (input.cancel === "outer" ? outer : inner).cancel();
    const [outerWork, innerWork, shielded] = (await inOuter) as unknown[];
    return { outerWork, innerWork, shielded, cancelled: { outer: outer.cancelled, inner: inner.cancelled } };
  };

  it("cancelling a scope cancels its children but not nonCancellable parts", async () => {
    const run = new FakeRun({ cancel: "outer" });
    const ex = await run.replayed(nested);
    expect(summarize(await run.task(ex))).toEqual(["schedule inner-work#1", "schedule shielded#2", "schedule outer-work#3", "wait cancel#4"]);
    run.send(inputs.externalEvent("cancel"));
    expect(summarize(await run.task(ex))).toEqual(["cancel activity#1", "cancel activity#3"]);
    run.send(inputs.activityCompleted(2, "kept"));
    expect(resultOf(await run.task(ex))).toEqual({
      outerWork: "CancelledFailure: scope cancelled",
      innerWork: "CancelledFailure: scope cancelled",
      shielded: "kept",
      cancelled: { outer: true, inner: true },
    });
    await expectReplays(run, nested);
  });

  it("cancelling a child scope leaves its parent's awaits running", async () => {
    const run = new FakeRun({ cancel: "inner" });
    const ex = await run.replayed(nested);
    await run.task(ex);
    run.send(inputs.externalEvent("cancel"));
    expect(summarize(await run.task(ex))).toEqual(["cancel activity#1"]);
    run.send(inputs.activityCompleted(2, "kept"), inputs.activityCompleted(3, "outer done"));
    expect(resultOf(await run.task(ex))).toEqual({
      outerWork: "outer done",
      innerWork: "CancelledFailure: scope cancelled",
      shielded: "kept",
      cancelled: { outer: false, inner: true },
    });
    await expectReplays(run, nested);
  });

  it("runs cleanup in nonCancellable inside a cancelled scope, while unshielded awaits there reject at once", async () => {
    const wf: Workflow = async (ctx) => {
      const scope = ctx.newCancellationScope();
      const result = scope.run(async () => {
        try {
          return await ctx.executeActivity("work");
        } catch (err) {
          if (!(err instanceof CancelledFailure)) throw err;
          const refused = await outcome(ctx.executeActivity("not shielded"));
          // Even an event the run already received.
          const refusedEvent = await outcome(ctx.waitForEvent("abort"));
          const cleaned = await ctx.nonCancellable(() => ctx.executeActivity("cleanup"));
          return { refused, refusedEvent, cleaned };
        }
      });
      await ctx.waitForEvent("abort");
      scope.cancel("aborted");
      return result;
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["schedule work#1", "wait abort#2"]);
    run.send(inputs.externalEvent("abort"));
    // The refused call uses no seq: the cleanup gets #3.
    expect(summarize(await run.task(ex))).toEqual(["cancel activity#1", "schedule cleanup#3"]);
    run.send(inputs.activityCompleted(3, "done"));
    expect(resultOf(await run.task(ex))).toEqual({
      refused: "CancelledFailure: scope cancelled: aborted",
      refusedEvent: "CancelledFailure: scope cancelled: aborted",
      cleaned: "done",
    });
    await expectReplays(run, wf);
  });

  it("cancelling a scope drops its event waits, timed or not; histories without the drops replay", async () => {
    const wf: Workflow = async (ctx) => {
      const scope = ctx.newCancellationScope();
      const timed = scope.run(() => outcome(ctx.waitForEvent("approval", { timeout: "30d" })));
      const untimed = scope.run(() => outcome(ctx.waitForEvent("note")));
      await ctx.sleep("1m");
      scope.cancel("gave up");
      await ctx.executeActivity("next");
      return [await timed, await untimed];
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["wait approval#1", "wait note#2", "timer#3"]);
    run.send(inputs.timerFired(3));
    // The server keeps a wait's time-out, and describe the wait, until the SDK drops it (decision 0022).
    expect(summarize(await run.task(ex))).toEqual(["cancel timer#1", "cancel timer#2", "schedule next#4"]);
    run.send(inputs.activityCompleted(4));
    expect(resultOf(await run.task(ex))).toEqual(["CancelledFailure: scope cancelled: gave up", "CancelledFailure: scope cancelled: gave up"]);
    await expectReplays(run, wf);

    // The same run as SDKs that issued no drop (before 0022), or dropped only the timed wait, recorded it.
    await expectReplays(withoutEvents(run, (e) => e.attributes.case === "timerCancelled"), wf);
    await expectReplays(withoutEvents(run, (e) => e.attributes.case === "timerCancelled" && e.attributes.value.seq === 2), wf);
  });

  it("an untimed event wait cancelled by a scope is dropped: a later event goes to a later wait, not to it", async () => {
    const wf: Workflow = async (ctx) => {
      const scope = ctx.newCancellationScope();
      const first = scope.run(() => outcome(ctx.waitForEvent("approval")));
      await ctx.waitForEvent("drop");
      scope.cancel("not needed");
      const dropped = await first;
      await ctx.sleep("1m");
      return { dropped, later: await ctx.waitForEvent("approval") };
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["wait approval#1", "wait drop#2"]);
    run.send(inputs.namedEvent("drop", "d1"));
    expect(summarize(await run.task(ex))).toEqual(["cancel timer#1", "timer#3"]);
    // Arrives while no wait is open: buffered, then taken by the next wait at once (no command).
    run.send(inputs.namedEvent("approval", "a1", "yes"));
    expect(await run.task(ex)).toEqual([]);
    run.send(inputs.timerFired(3));
    expect(resultOf(await run.task(ex))).toEqual({ dropped: "CancelledFailure: scope cancelled: not needed", later: "yes" });
    await expectReplays(run, wf);
    await expectReplays(withoutEvents(run, (e) => e.attributes.case === "timerCancelled"), wf);
  });

  it("a task that ends the run leaves out untimed waits' drops (the end closes them), keeps timed ones'", async () => {
    const wf: Workflow = async (ctx) => {
      const listening = ctx.newCancellationScope();
      void listening.run(() => outcome(ctx.waitForEvent("note")));
      void listening.run(() => outcome(ctx.waitForEvent("approval", { timeout: "1d" })));
      try {
        await ctx.sleep("1h");
      } catch {
        // Run cancellation: clean up first, so the drops go out with a task that does not end the run.
        await ctx.nonCancellable(() => ctx.executeActivity("cleanup"));
        return "cleaned";
      }
      listening.cancel("done");
      return "slept";
    };
    const ended = new FakeRun();
    let ex = await ended.replayed(wf);
    expect(summarize(await ended.task(ex))).toEqual(["wait note#1", "wait approval#2", "timer#3"]);
    ended.send(inputs.timerFired(3));
    expect(summarize(await ended.task(ex))).toEqual(["cancel timer#2", "complete"]);
    await expectReplays(ended, wf);

    const cancelled = new FakeRun();
    ex = await cancelled.replayed(wf);
    await cancelled.task(ex);
    cancelled.send(inputs.cancelRequested());
    expect(summarize(await cancelled.task(ex))).toEqual(["cancel timer#1", "cancel timer#2", "cancel timer#3", "schedule cleanup#4"]);
    cancelled.send(inputs.activityCompleted(4));
    expect(resultOf(await cancelled.task(ex))).toBe("cleaned");
    await expectReplays(cancelled, wf);
  });

  it("run cancellation reaches awaits in child scopes, not their nonCancellable parts", async () => {
    const wf: Workflow = async (ctx) => {
      const scope = ctx.newCancellationScope();
      const inScope = scope.run(() => outcome(ctx.sleep("1h")));
      const shielded = ctx.cancellable(() => ctx.nonCancellable(() => ctx.sleep("1h")));
      return { inScope: await inScope, shielded: await outcome(shielded), scopeCancelled: scope.cancelled };
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["timer#1", "timer#2"]);
    run.send(inputs.cancelRequested());
    expect(summarize(await run.task(ex))).toEqual(["cancel timer#1"]);
    run.send(inputs.timerFired(2));
    expect(resultOf(await run.task(ex))).toEqual({ inScope: "CancelledFailure: run cancelled", shielded: undefined, scopeCancelled: true });
    await expectReplays(run, wf);
  });

  it("keeps today's rule for the root: awaits started after run cancellation still run", async () => {
    const wf: Workflow = async (ctx) => {
      const first = await outcome(ctx.executeActivity("first"));
      const inScope = await outcome(ctx.cancellable(() => ctx.executeActivity("in-new-scope")));
      return { first, second: await ctx.executeActivity("second"), inScope };
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.cancelRequested());
    expect(summarize(await run.task(ex))).toEqual(["cancel activity#1", "schedule in-new-scope#2"]);
    run.send(inputs.activityCompleted(2, "b"));
    expect(summarize(await run.task(ex))).toEqual(["schedule second#3"]);
    run.send(inputs.activityCompleted(3, "c"));
    expect(resultOf(await run.task(ex))).toEqual({ first: "CancelledFailure: run cancelled", second: "c", inScope: "b" });
    await expectReplays(run, wf);
  });

  it("rejects misuse with a clear error", async () => {
    const wf: Workflow = async (ctx) => {
      const scope = ctx.newCancellationScope();
      return [
        await outcome(ctx.cancellable("x" as never)),
        await outcome(scope.run(undefined as never)),
        await outcome(ctx.nonCancellable(null as never)),
        await outcome(Promise.resolve().then(() => scope.cancel(42 as never))),
      ];
    };
    const run = new FakeRun();
    expect(resultOf(await run.task(await run.replayed(wf)))).toEqual([
      "TypeError: ctx.cancellable expects a function",
      "TypeError: scope.run expects a function",
      "TypeError: ctx.nonCancellable expects a function",
      "TypeError: scope.cancel: the reason must be a string",
    ]);
  });
});

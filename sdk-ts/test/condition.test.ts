/**
 * Replay core, no I/O: `ctx.condition` resolving at once, after events, on
 * its timeout, with a throwing predicate, and under cancellation; every
 * history the live run records replays to the same commands.
 */
import { describe, expect, it } from "vitest";
import { guardedRunner, installDeterminismGuard } from "../src/worker/determinism-guard.js";
import type { Workflow } from "../src/workflow/types.js";
import { FakeRun, inputs, resultOf, summarize } from "./history-builder.js";

installDeterminismGuard();

/** Collects votes (events vote-0, vote-1, ...) until `need` arrived or the timeout passed. */
const tally: Workflow = async (ctx, input: { need: number; timeout?: string }) => {
  const votes: string[] = [];
  const listening = ctx.newCancellationScope();
  void listening.run(async () => {
    for (let i = 0; ; i++) votes.push(await ctx.waitForEvent<string>(`vote-${i}`));
  }).catch(() => {});
  const done = await ctx.condition(() => votes.length >= input.need, input.timeout ? { timeout: input.timeout } : {});
  listening.cancel("tally over");
  return { done, votes };
};

async function expectReplays(run: FakeRun, wf: Workflow): Promise<void> {
  await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  await expect(run.replayed(wf, guardedRunner)).resolves.toMatchObject({ finished: true });
}

describe("ctx.condition", () => {
  it("resolves at once, issuing nothing, when the predicate already holds", async () => {
    const run = new FakeRun({ need: 0, timeout: "1h" });
    const ex = await run.replayed(tally);
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["wait vote-0#1", "complete"]);
    expect(resultOf(commands)).toEqual({ done: true, votes: [] });
    await expectReplays(run, tally);
  });

  it("resolves true once events change the state, cancelling its timer in that task", async () => {
    const run = new FakeRun({ need: 2, timeout: "1h" });
    const ex = await run.replayed(tally);
    expect(summarize(await run.task(ex))).toEqual(["wait vote-0#1", "timer#2"]);
    run.send(inputs.externalEvent("vote-0", "yes"));
    expect(summarize(await run.task(ex))).toEqual(["wait vote-1#3"]);
    // A replay from here on (a cache miss) continues the same way.
    const resumed = await run.replayed(tally);
    run.send(inputs.externalEvent("vote-1", "no"));
    const commands = await run.task(resumed);
    expect(summarize(commands)).toEqual(["wait vote-2#4", "cancel timer#2", "complete"]);
    expect(resultOf(commands)).toEqual({ done: true, votes: ["yes", "no"] });
    await expectReplays(run, tally);
  });

  it("waits without a timer when no timeout is given", async () => {
    const run = new FakeRun({ need: 1 });
    const ex = await run.replayed(tally);
    expect(summarize(await run.task(ex))).toEqual(["wait vote-0#1"]);
    run.send(inputs.externalEvent("vote-0", "yes"));
    expect(resultOf(await run.task(ex))).toEqual({ done: true, votes: ["yes"] });
    await expectReplays(run, tally);
  });

  it("resolves false when the timer fires first", async () => {
    const run = new FakeRun({ need: 2, timeout: "10m" });
    const ex = await run.replayed(tally);
    await run.task(ex);
    run.send(inputs.externalEvent("vote-0", "yes"));
    await run.task(ex);
    run.send(inputs.timerFired(2));
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["complete"]);
    expect(resultOf(commands)).toEqual({ done: false, votes: ["yes"] });
    await expectReplays(run, tally);
  });

  it("lets the predicate win when it holds in the same task the timer fires", async () => {
    const run = new FakeRun({ need: 1, timeout: "10m" });
    const ex = await run.replayed(tally);
    await run.task(ex);
    run.send(inputs.timerFired(2), inputs.externalEvent("vote-0", "late but in time"));
    const commands = await run.task(ex);
    // The timer already fired: nothing to cancel.
    expect(summarize(commands)).toEqual(["wait vote-1#3", "complete"]);
    expect(resultOf(commands)).toEqual({ done: true, votes: ["late but in time"] });
    await expectReplays(run, tally);
  });

  it("re-evaluates until no condition changes: one resolution can satisfy the next in the same task", async () => {
    const wf: Workflow = async (ctx) => {
      let stage = 0;
      const order: string[] = [];
      void ctx.condition(() => stage >= 1).then(() => {
        order.push("first");
        stage = 2;
      });
      const second = ctx.condition(() => stage >= 2).then(() => order.push("second"));
      await ctx.waitForEvent("go");
      stage = 1;
      await second;
      return order;
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["wait go#1"]);
    run.send(inputs.externalEvent("go"));
    expect(resultOf(await run.task(ex))).toEqual(["first", "second"]);
    await expectReplays(run, wf);
  });

  it("rejects the condition with the error its predicate throws, at once or later", async () => {
    const wf: Workflow = async (ctx) => {
      const state: { items?: string[] } = {};
      const atOnce = await ctx.condition(() => state.items!.length > 0).catch((e: Error) => `at once: ${e.name}`);
      const later = ctx.condition(() => state.items !== undefined && state.items.length > 0 && state.items[5]!.length > 0);
      state.items = [await ctx.waitForEvent<string>("item")];
      const laterOutcome = await later.catch((e: Error) => `later: ${e.name}`);
      const asyncPredicate = await ctx.condition((async () => true) as never).catch((e: Error) => e.message);
      return [atOnce, laterOutcome, asyncPredicate];
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["wait item#1"]);
    run.send(inputs.externalEvent("item", "x"));
    expect(resultOf(await run.task(ex))).toEqual([
      "at once: TypeError",
      "later: TypeError",
      "ctx.condition: the predicate must return a boolean synchronously; it returned a promise",
    ]);
    await expectReplays(run, wf);
  });

  it("rejects a bad timeout or predicate without issuing anything", async () => {
    const wf: Workflow = async (ctx) => {
      const messages: string[] = [];
      for (const call of [
        () => ctx.condition(() => false, { timeout: "soon" }),
        () => ctx.condition(() => false, { timeout: "4000d" }),
        () => ctx.condition("ready" as never),
      ]) {
        messages.push(await call().then(String, (e: Error) => e.message));
      }
      return messages;
    };
    const run = new FakeRun();
    const [first, second, third] = resultOf(await run.task(await run.replayed(wf))) as string[];
    expect(first).toMatch(/^ctx.condition: invalid duration "soon"/);
    expect(second).toMatch(/^ctx.condition: timeout 4000d is longer than 10 years/);
    expect(third).toBe("ctx.condition expects a predicate function");
  });

  it("is cancelled by run cancellation (its timer too) unless it waits in nonCancellable", async () => {
    const wf: Workflow = async (ctx) => {
      let released = false;
      const shielded = ctx.nonCancellable(() => ctx.condition(() => released, { timeout: "1h" }));
      const plain = await ctx.condition(() => released, { timeout: "1h" }).catch((e: Error) => `${e.name}: ${e.message}`);
      released = true;
      return { plain, shielded: await shielded };
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["timer#1", "timer#2"]);
    run.send(inputs.cancelRequested("stop"));
    const commands = await run.task(ex);
    // Only the plain condition's timer is cancelled; the shielded one then holds and drops its own timer.
    expect(summarize(commands)).toEqual(["cancel timer#2", "cancel timer#1", "complete"]);
    expect(resultOf(commands)).toEqual({ plain: "CancelledFailure: run cancelled: stop", shielded: true });
    await expectReplays(run, wf);
  });
});

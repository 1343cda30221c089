import { describe, expect, it } from "vitest";
import { DeterminismViolationError } from "../src/common/errors.js";
import { guardedRunner, installDeterminismGuard, inWorkflowScope } from "../src/worker/determinism-guard.js";
import type { Workflow } from "../src/workflow/types.js";
import { FakeRun, T0, inputs } from "./history-builder.js";

installDeterminismGuard();

interface Sample {
  dateNow: number;
  newDate: number;
  dateCall: string;
  mathRandom: number;
  ctxNow: number;
  ctxRandom: number;
  uuid: string;
}

function sample(ctx: Parameters<Workflow>[0]): Sample {
  return {
    dateNow: Date.now(),
    newDate: new Date().getTime(),
    dateCall: Date(),
    mathRandom: Math.random(),
    ctxNow: ctx.now().getTime(),
    ctxRandom: ctx.random(),
    uuid: ctx.uuid(),
  };
}

describe("determinism guard", () => {
  const samples: Sample[][] = [];
  const wf: Workflow = async (ctx) => {
    const mine: Sample[] = [];
    samples.push(mine);
    mine.push(sample(ctx));
    await ctx.executeActivity("a");
    mine.push(sample(ctx));
    await Promise.all([ctx.executeActivity("b"), ctx.executeActivity("c")]);
    mine.push(sample(ctx));
    return "ok";
  };

  it("gives workflow code the same Date.now(), new Date(), Math.random() on every replay", async () => {
    samples.length = 0;
    const run = new FakeRun();
    const live = await run.replayed(wf, guardedRunner);
    await run.task(live, { stepMs: 1_000 });
    run.send(inputs.activityCompleted(1));
    await run.task(live, { stepMs: 5_000 });
    run.send(inputs.activityCompleted(2), inputs.activityCompleted(3));
    await run.task(live, { stepMs: 7_000 });

    await run.replayed(wf, guardedRunner);
    await run.replayed(wf, guardedRunner);
    const [first, second, third] = samples;
    expect(first).toHaveLength(3);
    expect(second).toEqual(first);
    expect(third).toEqual(first);
    // The clock is the task time, not the real clock: each block sees its own marker time.
    expect(first!.map((s) => s.dateNow)).toEqual([T0 + 1_000, T0 + 6_000, T0 + 13_000]);
    expect(first!.every((s) => s.newDate === s.dateNow && s.ctxNow === s.dateNow)).toBe(true);
    expect(first![0]!.mathRandom).not.toBe(first![1]!.mathRandom);
    expect(first![0]!.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("leaves the real clock and Math.random to code outside workflows (activities, the worker)", async () => {
    const before = performance.timeOrigin + performance.now();
    const now = Date.now();
    expect(Math.abs(now - before)).toBeLessThan(1_000);
    expect(Math.abs(new Date().getTime() - before)).toBeLessThan(1_000);
    expect(new Date(0).getTime()).toBe(0);
    expect(new Date(2020, 1, 1) instanceof Date).toBe(true);
    expect(new Date("2020-01-02T00:00:00Z").getTime()).toBe(Date.UTC(2020, 0, 2));
    class Stamp extends Date {}
    expect(new Stamp(5)).toBeInstanceOf(Stamp);
    expect(new Stamp(5).getTime()).toBe(5);
    expect(inWorkflowScope()).toBe(false);
    // An "activity" running while workflow code is suspended sees the real clock.
    let seenInsideActivity = 0;
    const wfWithActivity: Workflow = async (ctx) => {
      await ctx.executeActivity("a");
      return Date.now();
    };
    const run = new FakeRun();
    const ex = await run.replayed(wfWithActivity, guardedRunner);
    await run.task(ex);
    seenInsideActivity = Date.now();
    expect(Math.abs(seenInsideActivity - (performance.timeOrigin + performance.now()))).toBeLessThan(1_000);
  });

  it("rejects setTimeout in workflow code with an error pointing to ctx.sleep, even when caught", async () => {
    const timer: Workflow = async () => {
      await new Promise((resolve) => setTimeout(resolve, 10));
      return "never";
    };
    const run = new FakeRun();
    const ex = await run.replayed(timer, guardedRunner);
    const error = await run.task(ex).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeterminismViolationError);
    expect((error as Error).message).toMatch(/setTimeout was called in workflow code.*ctx\.sleep/);

    const sneaky: Workflow = async () => {
      try {
        setInterval(() => {}, 10);
      } catch {
        // swallowed on purpose: the task must still fail
      }
      return "ok";
    };
    const run2 = new FakeRun();
    const ex2 = await run2.replayed(sneaky, guardedRunner);
    await expect(run2.task(ex2)).rejects.toThrow(/setInterval was called in workflow code/);
  });

  it("keeps timers working outside workflow code", async () => {
    await new Promise((resolve) => setTimeout(resolve, 1));
    const { setTimeout: sleep } = await import("node:timers/promises");
    await sleep(1);
  });
});

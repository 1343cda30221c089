/**
 * Replay core, no I/O: `ctx.patched` and `ctx.deprecatePatch` through the
 * three steps of changing a deployed workflow (patch, deprecate, remove), on
 * histories recorded by each version, and the replay-check rules for patch
 * markers (docs/worker-protocol.md, "Patch markers").
 */
import { describe, expect, it } from "vitest";
import { NonDeterminismError } from "../src/common/errors.js";
import { closeBlock, matchCommand, openBlock } from "../src/workflow/replay-check.js";
import { buildPatchMarker } from "../src/workflow/patches.js";
import type { Workflow } from "../src/workflow/types.js";
import { FakeRun, event, inputs, resultOf, summarize } from "./history-builder.js";

// The change: a fraud check inserted between reserving stock and the pickup timer.
const v1: Workflow = async (ctx) => {
  await ctx.executeActivity("reserve");
  await ctx.sleep("1h");
  await ctx.executeActivity("ship");
  return "old path";
};
const v2: Workflow = async (ctx) => {
  await ctx.executeActivity("reserve");
  const patched = ctx.patched("fraud-check");
  if (patched) await ctx.executeActivity("fraudCheck");
  await ctx.sleep("1h");
  await ctx.executeActivity("ship");
  return patched ? "new path" : "old path";
};
const v3: Workflow = async (ctx) => {
  await ctx.executeActivity("reserve");
  ctx.deprecatePatch("fraud-check");
  await ctx.executeActivity("fraudCheck");
  await ctx.sleep("1h");
  await ctx.executeActivity("ship");
  return "new path";
};
const v4: Workflow = async (ctx) => {
  await ctx.executeActivity("reserve");
  await ctx.executeActivity("fraudCheck");
  await ctx.sleep("1h");
  await ctx.executeActivity("ship");
  return "new path";
};

/** Runs `workflow` from the start until it sleeps; returns the run and the commands of each task. */
async function untilAsleep(workflow: Workflow): Promise<{ run: FakeRun; tasks: string[][] }> {
  const run = new FakeRun();
  const ex = await run.replayed(workflow);
  const tasks = [summarize(await run.task(ex))];
  run.send(inputs.activityCompleted(1));
  tasks.push(summarize(await run.task(ex)));
  if (tasks[1]!.some((c) => c.startsWith("schedule fraudCheck"))) {
    run.send(inputs.activityCompleted(2));
    tasks.push(summarize(await run.task(ex)));
  }
  return { run, tasks };
}

/** Restarts the worker on `workflow` (a fresh replay), fires the timer and finishes the run. */
async function finishOn(run: FakeRun, workflow: Workflow, timerSeq: number): Promise<unknown> {
  const ex = await run.replayed(workflow);
  run.send(inputs.timerFired(timerSeq));
  expect(summarize(await run.task(ex))).toEqual([`schedule ship#${timerSeq + 1}`]);
  run.send(inputs.activityCompleted(timerSeq + 1));
  return resultOf(await run.task(ex));
}

const markers = (run: FakeRun) =>
  run.history.flatMap((e) => (e.attributes.case === "patchMarkerRecorded" ? [{ sequence: Number(e.sequence), ...e.attributes.value }] : []));

describe("ctx.patched", () => {
  it("returns false on a history written before the patch existed, so the old run keeps the old path", async () => {
    const { run } = await untilAsleep(v1);
    expect(await finishOn(run, v2, 2)).toBe("old path");
    expect(markers(run)).toEqual([]);
    // The finished history replays on v2 (false again) and still on v1.
    await expect(run.replayed(v2)).resolves.toMatchObject({ finished: true });
    await expect(run.replayed(v1)).resolves.toMatchObject({ finished: true });
  });

  it("returns true on a first execution and records the marker in the block of the call", async () => {
    const { run, tasks } = await untilAsleep(v2);
    expect(tasks[1]).toEqual(["patch fraud-check", "schedule fraudCheck#2"]);
    expect(markers(run)).toEqual([expect.objectContaining({ patchId: "fraud-check", deprecated: false })]);
    expect(await finishOn(run, v2, 3)).toBe("new path");
    await expect(run.replayed(v2)).resolves.toMatchObject({ finished: true });
    expect(markers(run)).toHaveLength(1);
  });

  it("takes the new path in an old run that reaches the call after the deploy", async () => {
    const late: Workflow = async (ctx) => {
      await ctx.executeActivity("reserve");
      await ctx.sleep("1h");
      if (ctx.patched("gift-note")) await ctx.executeActivity("giftNote");
      await ctx.executeActivity("ship");
      return "done";
    };
    const { run } = await untilAsleep(v1);
    const ex = await run.replayed(late);
    run.send(inputs.timerFired(2));
    expect(summarize(await run.task(ex))).toEqual(["patch gift-note", "schedule giftNote#3"]);
    await expect(run.replayed(late)).resolves.toBeDefined();
  });

  it("keeps its first answer for the rest of the run, replay or live", async () => {
    const answers: boolean[] = [];
    const loop: Workflow = async (ctx) => {
      for (let i = 0; i < 3; i++) {
        answers.push(ctx.patched("loop"));
        await ctx.sleep("1m");
      }
      return answers.slice(-3);
    };
    const run = new FakeRun();
    const old: Workflow = async (ctx) => {
      for (let i = 0; i < 3; i++) await ctx.sleep("1m");
      return [];
    };
    const ex1 = await run.replayed(old);
    await run.task(ex1); // timer 1, recorded without a marker
    answers.length = 0;
    const ex = await run.replayed(loop); // false on replay...
    run.send(inputs.timerFired(1));
    expect(summarize(await run.task(ex))).toEqual(["timer#2"]); // ...and still false live: no marker
    run.send(inputs.timerFired(2));
    await run.task(ex);
    run.send(inputs.timerFired(3));
    expect(resultOf(await run.task(ex))).toEqual([false, false, false]);
  });

  it("is true in later blocks once an earlier block recorded the marker, with no second marker", async () => {
    const wf: Workflow = async (ctx) => {
      ctx.deprecatePatch("p");
      await ctx.sleep("1m");
      return ctx.patched("p");
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["patch p (deprecated)", "timer#1"]);
    // A later version that only asks in the second block.
    const later: Workflow = async (ctx) => {
      await ctx.sleep("1m");
      return ctx.patched("p");
    };
    const replayed = await run.replayed(later);
    run.send(inputs.timerFired(1));
    const commands = await run.task(replayed);
    expect(summarize(commands)).toEqual(["complete"]);
    expect(resultOf(commands)).toBe(true);
    // On replay too: block 2 asks, finds the marker of block 1, and produces no marker of its own.
    await expect(run.replayed(later)).resolves.toMatchObject({ finished: true });
  });

  it("matches a recorded marker by patch id wherever it stands among the block's commands", async () => {
    const wf: Workflow = async (ctx) => {
      const first = ctx.executeActivity("a");
      const use = ctx.patched("moved");
      await first;
      return use;
    };
    // Recorded by a version that asked before scheduling: marker first, then the activity.
    const run = new FakeRun();
    run.history.push(event(2, { case: "workflowTaskCompleted", value: { attempt: 1 } as never }));
    run.history.push(event(3, { case: "patchMarkerRecorded", value: { patchId: "moved", deprecated: false } as never }));
    run.history.push(event(4, { case: "activityScheduled", value: { seq: 1, activityName: "a" } as never }));
    const ex = await run.replayed(wf);
    run.send(inputs.activityCompleted(1));
    expect(resultOf(await run.task(ex))).toBe(true);
  });

  it("rejects a bad patch id at the call", async () => {
    for (const id of ["", "has space", "x".repeat(129), "ünïcode"]) {
      const run = new FakeRun();
      const wf: Workflow = async (ctx) => {
        try {
          ctx.patched(id);
          return "accepted";
        } catch (err) {
          return (err as Error).name;
        }
      };
      const result = resultOf(await run.task(await run.replayed(wf)));
      expect(result === "TypeError" || result === "RangeError").toBe(true);
    }
  });
});

describe("ctx.deprecatePatch", () => {
  it("replays a history recorded by the patched version, and records a deprecated marker on new runs", async () => {
    const { run: fromV2 } = await untilAsleep(v2);
    expect(await finishOn(fromV2, v3, 3)).toBe("new path");
    const { run, tasks } = await untilAsleep(v3);
    expect(tasks[1]).toEqual(["patch fraud-check (deprecated)", "schedule fraudCheck#2"]);
    expect(await finishOn(run, v3, 3)).toBe("new path");
    // Rolled back to v2, the patched code still takes the new path on a v3 history.
    await expect(run.replayed(v2)).resolves.toMatchObject({ finished: true });
  });

  it("replays a history without the marker (recorded once the call was removed)", async () => {
    const { run } = await untilAsleep(v4);
    expect(markers(run)).toEqual([]);
    expect(await finishOn(run, v3, 3)).toBe("new path");
  });

  it("does not replay a run that took the old path: deprecate only once those runs have ended", async () => {
    const { run } = await untilAsleep(v1);
    const error = await run.replayed(v3).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(NonDeterminismError);
    expect((error as Error).message).toContain("fraudCheck");
  });
});

describe("after the call is removed", () => {
  it("replays histories that hold the marker, skipping it", async () => {
    const { run: fromV2 } = await untilAsleep(v2);
    expect(await finishOn(fromV2, v4, 3)).toBe("new path");
    const { run: fromV3 } = await untilAsleep(v3);
    expect(await finishOn(fromV3, v4, 3)).toBe("new path");
    expect(markers(fromV2)).toHaveLength(1);
    expect(markers(fromV3)).toHaveLength(1);
  });
});

describe("the replay check for patch markers", () => {
  const marker = event(2, { case: "workflowTaskCompleted", value: { attempt: 1 } as never });
  const recorded = (seq: number, patchId: string) => event(seq, { case: "patchMarkerRecorded", value: { patchId, deprecated: false } as never });

  it("refuses a produced non-deprecated marker its block does not record", () => {
    const block = openBlock(marker, [buildPatchMarker("p", false)]);
    expect(() => closeBlock(block, undefined, 2)).toThrow(/patch_marker_recorded\("p"\).*does not record/);
  });

  it("accepts a produced deprecated marker without a recorded one, and skips a recorded one not produced", () => {
    const block = openBlock(marker, [buildPatchMarker("d", true)]);
    matchCommand(block, recorded(3, "other"));
    expect(() => closeBlock(block, undefined, 3)).not.toThrow();
  });
});

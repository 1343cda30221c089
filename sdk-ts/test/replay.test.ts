import { describe, expect, it } from "vitest";
import { decodePayload } from "../src/common/payload.js";
import { ActivityFailure, ApplicationFailure, NonDeterminismError } from "../src/common/errors.js";
import { errorToFailure, failureToError } from "../src/common/failure.js";
import { create } from "@bufbuild/protobuf";
import { CommandSchema, type Command } from "@dex/proto";
import { commandIdentity, eventIdentity, sameIdentity } from "../src/workflow/commands.js";
import type { Workflow } from "../src/workflow/types.js";
import { FakeRun, commandEvent, event, inputs, summarize } from "./history-builder.js";

function resultOf(commands: Command[]): unknown {
  const last = commands.at(-1)?.command;
  if (last?.case !== "completeRun") throw new Error(`expected complete_run, got ${last?.case}`);
  return decodePayload(last.value.result);
}

const sequential: Workflow<{ id: string }, string> = async (ctx, input) => {
  const a = await ctx.executeActivity<string>("reserve", input.id);
  const b = await ctx.executeActivity<string>("charge", a);
  return `${a}+${b}`;
};

describe("replay core: sequential activities", () => {
  it("schedules one activity per task and completes with the result", async () => {
    const run = new FakeRun({ id: "o1" });
    const ex = await run.replayed(sequential);
    expect(summarize(await run.task(ex))).toEqual(["schedule reserve#1"]);
    run.send(inputs.activityCompleted(1, "R"));
    expect(summarize(await run.task(ex))).toEqual(["schedule charge#2"]);
    run.send(inputs.activityCompleted(2, "C"));
    const last = await run.task(ex);
    expect(resultOf(last)).toBe("R+C");
    expect(ex.finished).toBe(true);
    // history: started, marker, scheduled, completed, marker, scheduled, completed, marker, run_completed
    expect(run.history).toHaveLength(9);
  });

  it("a fresh replay of the recorded history yields the same next commands as the cached run", async () => {
    const run = new FakeRun({ id: "o1" });
    const cached = await run.replayed(sequential);
    await run.task(cached);
    run.send(inputs.activityCompleted(1, "R"));
    await run.task(cached);
    const fresh = await run.replayed(sequential);
    expect(fresh.historyLength).toBe(cached.historyLength);
    run.send(inputs.activityCompleted(2, "C"));
    const newEvents = [event(run.history.length + 1, inputs.activityCompleted(2, "C"))];
    const fromFresh = await fresh.activate(newEvents, undefined);
    const fromCache = await run.task(cached);
    expect(fromFresh.commands).toEqual(fromCache);
    expect(resultOf(fromFresh.commands)).toBe("R+C");
  });

  it("delivers run input and passes activity input through as payloads", async () => {
    const run = new FakeRun({ id: "o42" });
    const ex = await run.replayed(sequential);
    const [cmd] = await run.task(ex);
    expect(cmd?.command.case).toBe("scheduleActivity");
    if (cmd?.command.case === "scheduleActivity") expect(decodePayload(cmd.command.value.input)).toBe("o42");
  });
});

describe("replay core: parallel activities", () => {
  const parallel: Workflow<void, number[]> = async (ctx) => {
    const acts = ctx.activities<{ double: (n: number) => Promise<number> }>({ startToCloseTimeout: "10s" });
    return Promise.all([acts.double(1), acts.double(2), acts.double(3)]);
  };

  it("issues all calls in one task and completes in call order whatever the completion order", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(parallel);
    expect(summarize(await run.task(ex))).toEqual(["schedule double#1", "schedule double#2", "schedule double#3"]);
    run.send(inputs.activityCompleted(2, 4));
    expect(await run.task(ex)).toEqual([]);
    run.send(inputs.activityCompleted(3, 6), inputs.activityCompleted(1, 2));
    expect(resultOf(await run.task(ex))).toEqual([2, 4, 6]);

    // The whole history replays cleanly, and a replay reports the same outcome.
    const replayed = await run.replayed(parallel);
    expect(replayed.finished).toBe(true);
  });

  it("replays results that arrived in one block in a different order", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(parallel);
    await run.task(ex);
    run.send(inputs.activityCompleted(3, 6), inputs.activityCompleted(2, 4), inputs.activityCompleted(1, 2));
    expect(resultOf(await run.task(ex))).toEqual([2, 4, 6]);
    await expect(run.replayed(parallel)).resolves.toBeDefined();
  });

  it("keeps seq shared across parallel and later calls", async () => {
    const wf: Workflow = async (ctx) => {
      await Promise.all([ctx.executeActivity("a"), ctx.executeActivity("b")]);
      return ctx.executeActivity("c");
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.activityCompleted(1), inputs.activityCompleted(2));
    expect(summarize(await run.task(ex))).toEqual(["schedule c#3"]);
  });
});

describe("replay core: activity failures", () => {
  const insufficient = errorToFailure(ApplicationFailure.nonRetryable("card declined", "InsufficientFunds", { code: 51 }));

  const compensating: Workflow<void, string> = async (ctx) => {
    await ctx.executeActivity("reserve");
    try {
      await ctx.executeActivity("charge");
      return "charged";
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      const cause = err.cause as ApplicationFailure;
      await ctx.executeActivity("release", { why: cause.type, code: (cause.details as { code: number }).code });
      return `compensated after ${err.activityName}#${err.seq} attempt ${err.attempt}: ${cause.message}`;
    }
  };

  it("rejects with ActivityFailure whose cause is the rebuilt ApplicationFailure", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(compensating);
    await run.task(ex);
    run.send(inputs.activityCompleted(1));
    await run.task(ex);
    run.send(inputs.activityFailed(2, insufficient, 3));
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["schedule release#3"]);
    const c = commands[0]!.command;
    if (c.case === "scheduleActivity") expect(decodePayload(c.value.input)).toEqual({ why: "InsufficientFunds", code: 51 });
    run.send(inputs.activityCompleted(3));
    expect(resultOf(await run.task(ex))).toBe("compensated after charge#2 attempt 3: card declined");
    await expect(run.replayed(compensating)).resolves.toBeDefined();
  });

  it("an uncaught ActivityFailure fails the run with the cause chain", async () => {
    const wf: Workflow = async (ctx) => ctx.executeActivity("charge");
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.activityFailed(1, insufficient, 1));
    const [cmd] = await run.task(ex);
    expect(cmd?.command.case).toBe("failRun");
    if (cmd?.command.case !== "failRun") return;
    const error = failureToError(cmd.command.value.failure!);
    expect(error).toBeInstanceOf(ActivityFailure);
    expect((error as ActivityFailure).activityName).toBe("charge");
    expect((error.cause as ApplicationFailure).type).toBe("InsufficientFunds");
    expect((error.cause as ApplicationFailure).nonRetryable).toBe(true);
  });

  it("an ApplicationFailure thrown on purpose fails the run with its type", async () => {
    const wf: Workflow = async () => {
      throw ApplicationFailure.create("bad input", "BadInput");
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    const [cmd] = await run.task(ex);
    if (cmd?.command.case !== "failRun") throw new Error("expected fail_run");
    expect(cmd.command.value.failure?.type).toBe("BadInput");
    expect(cmd.command.value.failure?.message).toBe("bad input");
    expect(cmd.command.value.failure?.stack).toContain("bad input");
  });
});

describe("replay core: non-determinism", () => {
  async function recordedSequential(): Promise<FakeRun> {
    const run = new FakeRun({ id: "o1" });
    const ex = await run.replayed(sequential);
    await run.task(ex);
    run.send(inputs.activityCompleted(1, "R"));
    await run.task(ex);
    return run; // history: 1 started, 2 marker, 3 reserve#1, 4 completed, 5 marker, 6 charge#2
  }

  it("names the event, the recorded and the produced command for a changed activity name", async () => {
    const run = await recordedSequential();
    const changed: Workflow = async (ctx, input: { id: string }) => {
      const a = await ctx.executeActivity("reserve", input.id);
      return ctx.executeActivity("refund", a);
    };
    const error = await run.replayed(changed).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NonDeterminismError);
    expect((error as Error).message).toContain("history event 6");
    expect((error as Error).message).toContain('recorded activity_scheduled(seq 2, "charge")');
    expect((error as Error).message).toContain('produced activity_scheduled(seq 2, "refund")');
  });

  it("detects a changed order of calls", async () => {
    const run = await recordedSequential();
    const swapped: Workflow = async (ctx) => {
      await ctx.executeActivity("charge");
      return ctx.executeActivity("reserve");
    };
    await expect(run.replayed(swapped)).rejects.toThrow(/history event 3: recorded activity_scheduled\(seq 1, "reserve"\)/);
  });

  it("detects an extra command", async () => {
    const run = await recordedSequential();
    const extra: Workflow = async (ctx) => {
      await Promise.all([ctx.executeActivity("reserve"), ctx.executeActivity("audit")]);
      return ctx.executeActivity("charge");
    };
    const error = (await run.replayed(extra).catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(NonDeterminismError);
    expect(error.message).toContain("history event 4 (activity_completed)");
    expect(error.message).toContain('produced activity_scheduled(seq 2, "audit")');
  });

  it("detects a missing command", async () => {
    const run = await recordedSequential();
    const missing: Workflow = async (ctx) => {
      await ctx.executeActivity("reserve");
      return "done early";
    };
    // The code now completes the run where history recorded a second activity.
    await expect(run.replayed(missing)).rejects.toThrow(
      /history event 6: recorded activity_scheduled\(seq 2, "charge"\), but the workflow code produced run_completed/,
    );
    const stalled: Workflow = async (ctx) => {
      await ctx.executeActivity("reserve");
      return new Promise(() => {});
    };
    await expect(run.replayed(stalled)).rejects.toThrow(/history event 6: recorded activity_scheduled.*produced no such command/);
  });

  it("detects extra commands at the end of history", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(async (ctx) => ctx.executeActivity("a"));
    await run.task(ex);
    const more: Workflow = async (ctx) => Promise.all([ctx.executeActivity("a"), ctx.executeActivity("b")]);
    await expect(run.replayed(more)).rejects.toThrow(/end of history \(after event 3\).*"b"/);
  });

  it("rejects a result for a seq the code never issued", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(async (ctx) => ctx.executeActivity("a"));
    await run.task(ex);
    run.send(inputs.activityCompleted(7));
    await expect(run.task(ex)).rejects.toThrow(/activity_completed for seq 7/);
  });
});

describe("replay core: cancellation", () => {
  it("rejects pending calls; an uncaught CancelledFailure ends the run as cancelled", async () => {
    const wf: Workflow = async (ctx) => ctx.executeActivity("slow");
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.cancelRequested("user asked"));
    expect(summarize(await run.task(ex))).toEqual(["cancel activity#1", "cancel"]);
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("lets the workflow compensate after cancellation", async () => {
    const wf: Workflow = async (ctx) => {
      try {
        return await ctx.executeActivity("slow");
      } catch {
        await ctx.executeActivity("cleanup");
        return "cleaned";
      }
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.cancelRequested());
    expect(summarize(await run.task(ex))).toEqual(["cancel activity#1", "schedule cleanup#2"]);
    // The cancelled activity's late outcome is delivered and ignored.
    run.send(inputs.activityCompleted(1, "late"), inputs.activityCompleted(2));
    expect(resultOf(await run.task(ex))).toBe("cleaned");
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });
});

describe("command identity", () => {
  it("compares kind, seq and name for every seq-bearing command, ignoring options", () => {
    const cancel = create(CommandSchema, { command: { case: "requestCancelActivity", value: { seq: 4 } } });
    expect(commandIdentity(cancel)).toEqual({ kind: "activityCancelRequested", seq: 4 });
    expect(sameIdentity(commandIdentity(cancel), eventIdentity(event(9, commandEvent(cancel))))).toBe(true);
    const child = create(CommandSchema, { command: { case: "requestCancelChildRun", value: { seq: 2 } } });
    expect(commandIdentity(child)).toEqual({ kind: "childRunCancelRequested", seq: 2 });
    const schedule = create(CommandSchema, {
      command: { case: "scheduleActivity", value: { seq: 1, activityName: "a", taskQueue: "other", priority: 90 } },
    });
    const recorded = event(3, { case: "activityScheduled", value: { seq: 1, activityName: "a", taskQueue: "default" } as never });
    expect(sameIdentity(commandIdentity(schedule), eventIdentity(recorded))).toBe(true);
  });
});

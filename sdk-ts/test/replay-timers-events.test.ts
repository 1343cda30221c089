/**
 * Replay core, no I/O: durable timers, external events (before and after the
 * wait, time-outs, races), side effects, status and labels, continue-as-new.
 * Every scenario ends by replaying its recorded history from scratch, which
 * must reproduce the recorded commands.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { CommandSchema } from "@dex/proto";
import { describe, expect, it } from "vitest";
import { CancelledFailure, EventWaitTimeoutError, type ApplicationFailure } from "../src/common/errors.js";
import { decodePayload } from "../src/common/payload.js";
import { guardedRunner, installDeterminismGuard } from "../src/worker/determinism-guard.js";
import type { Workflow, WorkflowContext } from "../src/workflow/types.js";
import { FakeRun, T0, event, failureOf, inputs, resultOf, summarize } from "./history-builder.js";

describe("durable timers", () => {
  const sleeper: Workflow = async (ctx) => {
    await ctx.sleep("5s");
    return "woke";
  };

  it("issues start_timer and resumes when the timer fires", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(sleeper);
    const [timer] = await run.task(ex);
    expect(summarize([timer!])).toEqual(["timer#1"]);
    if (timer?.command.case !== "startTimer") throw new Error("expected start_timer");
    expect(Number(timer.command.value.duration?.seconds)).toBe(5);
    expect(await run.task(ex)).toEqual([]); // a task without the timer changes nothing
    run.send(inputs.timerFired(1));
    expect(resultOf(await run.task(ex))).toBe("woke");
    await expect(run.replayed(sleeper)).resolves.toMatchObject({ finished: true });
  });

  it("sleepUntil sends the absolute fire time", async () => {
    const at = new Date(T0 + 3_600_000);
    const run = new FakeRun();
    const [timer] = await run.task(await run.replayed(async (ctx) => ctx.sleepUntil(at)));
    if (timer?.command.case !== "startTimer") throw new Error("expected start_timer");
    expect(timestampMs(timer.command.value.fireTime!)).toBe(at.getTime());
    expect(timer.command.value.duration).toBeUndefined();
  });

  it("rejects a bad duration at the call without using a seq", async () => {
    const wf: Workflow = async (ctx) => {
      const error = await ctx.sleep("soon").catch((e: unknown) => e);
      await ctx.executeActivity("next");
      return (error as Error).name;
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["schedule next#1"]);
    run.send(inputs.activityCompleted(1));
    expect(resultOf(await run.task(ex))).toBe("TypeError");
  });

  it("rejects a timer more than 10 years from the workflow clock at the call, without using a seq", async () => {
    const year = 365 * 86_400_000;
    const wf: Workflow = async (ctx) => {
      const outcome = (p: Promise<void>) => p.then(() => "slept", (e: Error) => `${e.name}: ${e.message}`);
      const errors = [
        await outcome(ctx.sleepUntil(new Date(ctx.now().getTime() + 11 * year))),
        await outcome(ctx.sleepUntil(new Date(1_700_000_000))), // Unix seconds passed as milliseconds: January 1970
        await outcome(ctx.sleep(`${11 * 365}d`)),
      ];
      await ctx.executeActivity("next");
      return errors;
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["schedule next#1"]);
    run.send(inputs.activityCompleted(1));
    const errors = resultOf(await run.task(ex)) as string[];
    expect(errors[0]).toMatch(/^RangeError: ctx\.sleepUntil: .* is more than 10 years from the workflow clock \(2025-01-01T12:00:01\.000Z\)/);
    expect(errors[1]).toMatch(/^RangeError: ctx\.sleepUntil: 1970-01-20T.*\(new Date\(seconds \* 1000\)/);
    expect(errors[2]).toMatch(/^RangeError: ctx\.sleep: 4015d is longer than 10 years/);
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("cancels a pending timer on cancellation, ignores its late firing, and keeps a non-cancellable timer", async () => {
    const wf: Workflow = async (ctx) => {
      try {
        await ctx.sleep("1h");
      } catch (err) {
        if (!(err instanceof CancelledFailure)) throw err;
      }
      await ctx.nonCancellable(() => ctx.sleep("1s"));
      return "slept after cancel";
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["timer#1"]);
    run.send(inputs.cancelRequested("stop"));
    expect(summarize(await run.task(ex))).toEqual(["cancel timer#1", "timer#2"]);
    // Timer 1 had fired into the inbox before the server saw the cancel: delivered and ignored.
    run.send(inputs.timerFired(1));
    expect(await run.task(ex)).toEqual([]);
    run.send(inputs.timerFired(2));
    expect(resultOf(await run.task(ex))).toBe("slept after cancel");
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });
});

describe("external events", () => {
  // Does some work first, so an event can arrive before the wait starts.
  const approval: Workflow = async (ctx) => {
    await ctx.executeActivity("prepare");
    return ctx.waitForEvent("approval");
  };

  it("keeps an event received before the wait and issues no wait command", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(approval);
    expect(summarize(await run.task(ex))).toEqual(["schedule prepare#1"]);
    run.send(inputs.externalEvent("approval", { approved: true }));
    expect(await run.task(ex)).toEqual([]);
    run.send(inputs.activityCompleted(1));
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["complete"]);
    expect(resultOf(commands)).toEqual({ approved: true });
    await expect(run.replayed(approval)).resolves.toMatchObject({ finished: true });
  });

  it("finds an event sent with the start (signal-with-start) before the code first waits", async () => {
    const collector: Workflow<string[], unknown[]> = async (ctx, ids) => {
      const received: unknown[] = [];
      for (const id of ids) received.push(await ctx.waitForEvent(id));
      return received;
    };
    const run = new FakeRun(["a", "b"]).send(inputs.externalEvent("a", 1));
    const ex = await run.replayed(collector);
    expect(summarize(await run.task(ex))).toEqual(["wait b#1"]);
    run.send(inputs.externalEvent("b", 2));
    expect(resultOf(await run.task(ex))).toEqual([1, 2]);
    await expect(run.replayed(collector)).resolves.toMatchObject({ finished: true });
  });

  it("issues wait_for_event with the timeout and resolves when the event arrives later", async () => {
    const wf: Workflow = async (ctx) => ctx.waitForEvent("approval", { timeout: "10m" });
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    const [wait] = await run.task(ex);
    if (wait?.command.case !== "waitForEvent") throw new Error("expected wait_for_event");
    expect(wait.command.value).toMatchObject({ seq: 1, eventId: "approval" });
    expect(Number(wait.command.value.timeout?.seconds)).toBe(600);
    run.send(inputs.externalEvent("approval", "yes"));
    expect(resultOf(await run.task(ex))).toBe("yes");
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("sends a zero timeout as a set field (time out at once), and issues nothing for an event already received", async () => {
    const wf: Workflow = async (ctx) => {
      const late = await ctx.waitForEvent("late", { timeout: 0 }).catch((e: unknown) => (e as Error).name);
      await ctx.executeActivity("next");
      return { late, early: await ctx.waitForEvent("early", { timeout: "0s" }) };
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    const [wait] = await run.task(ex);
    if (wait?.command.case !== "waitForEvent") throw new Error("expected wait_for_event");
    // Presence survives the wire: an unset timeout would mean "wait forever".
    const sent = fromBinary(CommandSchema, toBinary(CommandSchema, wait));
    expect(sent.command.case === "waitForEvent" && sent.command.value.timeout).toMatchObject({ seconds: 0n, nanos: 0 });
    run.send(inputs.eventWaitTimedOut(1));
    expect(summarize(await run.task(ex))).toEqual(["schedule next#2"]);
    run.send(inputs.externalEvent("early", "here"), inputs.activityCompleted(2));
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["complete"]);
    expect(resultOf(commands)).toEqual({ late: "EventWaitTimeoutError", early: "here" });
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("rejects with EventWaitTimeoutError on time-out and keeps an event that arrives afterwards", async () => {
    const wf: Workflow = async (ctx) => {
      let first: unknown;
      try {
        first = await ctx.waitForEvent("approval", { timeout: "1m" });
      } catch (err) {
        if (!(err instanceof EventWaitTimeoutError)) throw err;
        first = { timedOut: err.eventId, type: err.timeoutType };
      }
      await ctx.executeActivity("remind");
      return { first, second: await ctx.waitForEvent("approval") };
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.eventWaitTimedOut(1));
    expect(summarize(await run.task(ex))).toEqual(["schedule remind#2"]);
    run.send(inputs.externalEvent("approval", "late"), inputs.activityCompleted(2));
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["complete"]);
    expect(resultOf(commands)).toEqual({ first: { timedOut: "approval", type: "EVENT_WAIT" }, second: "late" });
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("fails the run with a rebuilt EventWaitTimeoutError when the time-out is not caught", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(async (ctx) => ctx.waitForEvent("approval", { timeout: "1s" }));
    await run.task(ex);
    run.send(inputs.eventWaitTimedOut(1));
    const error = failureOf(await run.task(ex));
    expect(error).toBeInstanceOf(EventWaitTimeoutError);
    expect((error as EventWaitTimeoutError).eventId).toBe("approval");
  });

  it("rejects a bad event id at the call", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(async (ctx) => ctx.waitForEvent("").catch((e: unknown) => (e as Error).message));
    expect(resultOf(await run.task(ex))).toMatch(/event name must be a string of 1 to 255 characters/);
  });

  // The outcome picks the next activity, so a replay that resolved the race differently would diverge.
  const raceWithTimeout: Workflow = async (ctx) => {
    const outcome = await ctx.waitForEvent("go", { timeout: "1m" }).then(
      () => "event",
      (err: unknown) => (err instanceof EventWaitTimeoutError ? "timeout" : "other"),
    );
    await ctx.executeActivity(`after-${outcome}`);
    return outcome;
  };

  it.each([
    // The event settles the timed wait, so the SDK drops its time-out (decision 0022): here it fired already.
    { order: "event first", block: [inputs.externalEvent("go"), inputs.eventWaitTimedOut(1)], winner: "event", drop: ["cancel timer#1"] },
    { order: "time-out first", block: [inputs.eventWaitTimedOut(1), inputs.externalEvent("go")], winner: "timeout", drop: [] },
  ])("an event racing its time-out in one task ($order) resolves by event order, the same on replay", async ({ block, winner, drop }) => {
    const run = new FakeRun();
    const ex = await run.replayed(raceWithTimeout);
    await run.task(ex);
    run.send(...block);
    expect(summarize(await run.task(ex))).toEqual([...drop, `schedule after-${winner}#2`]);
    const replayed = await run.replayed(raceWithTimeout);
    run.send(inputs.activityCompleted(2));
    const next = event(run.history.length + 1, inputs.activityCompleted(2));
    expect(resultOf((await replayed.activate([next], undefined)).commands)).toBe(winner);
  });

  it.each([
    { order: "timer first", block: [inputs.timerFired(2), inputs.externalEvent("go")], winner: "timer" },
    { order: "event first", block: [inputs.externalEvent("go"), inputs.timerFired(2)], winner: "event" },
  ])("an event racing a timer in one task ($order) replays identically", async ({ block, winner }) => {
    const race: Workflow = async (ctx) => {
      const won = await Promise.race([ctx.waitForEvent("go").then(() => "event"), ctx.sleep("1h").then(() => "timer")]);
      await ctx.executeActivity(`after-${won}`);
      return won;
    };
    const run = new FakeRun();
    const ex = await run.replayed(race);
    expect(summarize(await run.task(ex))).toEqual(["wait go#1", "timer#2"]);
    run.send(...block);
    expect(summarize(await run.task(ex))).toEqual([`schedule after-${winner}#3`]);
    await expect(run.replayed(race)).resolves.toBeDefined();
  });
});

describe("side effects", () => {
  it("runs the function once, records its value, and replays the recorded value", async () => {
    let calls = 0;
    const wf: Workflow = async (ctx) => {
      const token = await ctx.sideEffect(() => ({ token: `t-${++calls}`, at: new Date(T0) }));
      await ctx.executeActivity("use", token);
      return token;
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["side effect#1", "schedule use#2"]);
    const recorded = commands[0]!.command;
    if (recorded.case !== "recordSideEffect") throw new Error("expected record_side_effect");
    // Live code sees the JSON form too (a Date becomes its string), exactly what replay returns.
    const expected = { token: "t-1", at: new Date(T0).toISOString() };
    expect(decodePayload(recorded.value.value)).toEqual(expected);

    const replayed = await run.replayed(wf);
    expect(calls).toBe(1);
    const next = event(run.history.length + 1, inputs.activityCompleted(2));
    expect(resultOf((await replayed.activate([next], undefined)).commands)).toEqual(expected);
    expect(calls).toBe(1);
  });

  it("runs the function outside the determinism guard, so it reads the real clock", async () => {
    installDeterminismGuard();
    const wf: Workflow = async (ctx) => ({ inside: Date.now(), sideEffect: await ctx.sideEffect(() => Date.now()) });
    const run = new FakeRun();
    // Outside an activation the guarded Date.now() is the real clock (performance.now() drifts from it).
    const before = Date.now();
    const result = resultOf(await run.task(await run.replayed(wf, guardedRunner))) as { inside: number; sideEffect: number };
    expect(result.inside).toBe(T0 + 1_000);
    expect(result.sideEffect).toBeGreaterThanOrEqual(before);
    await expect(run.replayed(wf, guardedRunner)).resolves.toMatchObject({ finished: true });
  });

  it("fails the workflow task, recording nothing, when the function throws or returns a promise", async () => {
    const throwing = new FakeRun();
    const ex = await throwing.replayed(async (ctx) =>
      ctx.sideEffect(() => {
        throw new RangeError("no entropy");
      }),
    );
    await expect(throwing.task(ex)).rejects.toThrow(/ctx.sideEffect: the function threw: no entropy/);
    expect(throwing.history).toHaveLength(1);

    const asyncFn = new FakeRun();
    const ex2 = await asyncFn.replayed(async (ctx) => ctx.sideEffect(async () => 1));
    await expect(asyncFn.task(ex2)).rejects.toThrow(/must return its value synchronously/);
  });
});

describe("status, labels and continue-as-new", () => {
  const annotated: Workflow = async (ctx) => {
    ctx.setStatus("reserving");
    ctx.upsertLabels({ stage: "one", team: "shop" });
    await ctx.executeActivity("reserve");
    ctx.setStatus("");
    return "done";
  };

  it("issues set_custom_status and upsert_labels in call order", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(annotated);
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(['status "reserving"', "labels stage=one,team=shop", "schedule reserve#1"]);
    run.send(inputs.activityCompleted(1));
    expect(summarize(await run.task(ex))).toEqual(['status ""', "complete"]);
    await expect(run.replayed(annotated)).resolves.toMatchObject({ finished: true });
  });

  it("throws a TypeError for a non-string label value (a bug: it fails the workflow task, not the run)", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(async (ctx: WorkflowContext) => ctx.upsertLabels({ n: 5 as unknown as string }));
    const error = await run.task(ex).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/label "n" must be a string/);
    expect(ex.finished).toBe(false);
  });

  const counter: Workflow<{ n: number }> = async (ctx, input) => {
    const next = await ctx.executeActivity<number>("increment", input.n);
    return ctx.continueAsNew({ n: next }, { workflow: "counterV2", taskQueue: "counters" });
  };

  it("ends the run with continue_as_new, whose promise never settles", async () => {
    const run = new FakeRun({ n: 1 });
    const ex = await run.replayed(counter);
    await run.task(ex);
    run.send(inputs.activityCompleted(1, 2));
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["continue-as-new"]);
    const c = commands[0]!.command;
    if (c.case !== "continueAsNew") throw new Error("expected continue_as_new");
    expect(decodePayload(c.value.input)).toEqual({ n: 2 });
    expect(c.value).toMatchObject({ workflowName: "counterV2", taskQueue: "counters" });
    expect(ex.finished).toBe(true);
    await expect(run.replayed(counter)).resolves.toMatchObject({ finished: true });
  });

  it("sends nothing after continue-as-new, even if the code goes on", async () => {
    const wf: Workflow = async (ctx) => {
      void ctx.continueAsNew(1);
      ctx.setStatus("ignored");
      void ctx.executeActivity("ignored");
      return "ignored";
    };
    const run = new FakeRun();
    expect(summarize(await run.task(await run.replayed(wf)))).toEqual(["continue-as-new"]);
  });
});

/**
 * Replay core, no I/O: repeatable named external events (decision 0022).
 * Each event is consumed once (oldest wait, else the name's handler, else
 * buffered), in history order; unconsumed events go to continue_as_new.
 * Every scenario ends by replaying its recorded history from scratch.
 */
import { describe, expect, it } from "vitest";
import { ApplicationFailure, CancelledFailure } from "../src/common/errors.js";
import { decodePayload } from "../src/common/payload.js";
import type { Workflow } from "../src/workflow/types.js";
import { FakeRun, event, failureOf, inputs, resultOf, summarize } from "./history-builder.js";

describe("named events", () => {
  it("a second wait for a name takes a second event, in the order received", async () => {
    const wf: Workflow = async (ctx) => [await ctx.waitForEvent("item"), await ctx.waitForEvent("item"), await ctx.waitForEvent("item")];
    const run = new FakeRun().send(inputs.namedEvent("item", "a", 1), inputs.namedEvent("item", "b", 2));
    const ex = await run.replayed(wf);
    // Two buffered events are taken at once; the third wait is issued for the name.
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["wait item#1"]);
    const wait = commands[0]!.command;
    if (wait.case !== "waitForEvent") throw new Error("expected wait_for_event");
    expect(wait.value).toMatchObject({ eventName: "item", eventId: "item" });
    run.send(inputs.namedEvent("item", "c", 3));
    expect(resultOf(await run.task(ex))).toEqual([1, 2, 3]);
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("settles concurrent waits of one name oldest first, one event each", async () => {
    const wf: Workflow = async (ctx) => Promise.all([ctx.waitForEvent("x"), ctx.waitForEvent("x")]);
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["wait x#1", "wait x#2"]);
    run.send(inputs.namedEvent("x", "first", "one"));
    expect(await run.task(ex)).toEqual([]);
    run.send(inputs.namedEvent("x", "second", "two"));
    expect(resultOf(await run.task(ex))).toEqual(["one", "two"]);
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("an event repeated with the same id is consumed once", async () => {
    const wf: Workflow = async (ctx) => [await ctx.waitForEvent("x"), await ctx.waitForEvent("x")];
    const run = new FakeRun().send(inputs.namedEvent("x", "same", 1), inputs.namedEvent("x", "same", 2), inputs.namedEvent("x", "other", 3));
    const ex = await run.replayed(wf);
    expect(resultOf(await run.task(ex))).toEqual([1, 3]);
  });

  it("reads an event without a name (histories from before names) as named by its id", async () => {
    const wf: Workflow = async (ctx) => ctx.waitForEvent("approval");
    const run = new FakeRun();
    // The recorded wait of an older SDK names the event in event_id only.
    run.history.push(
      event(2, { case: "workflowTaskCompleted", value: { attempt: 1 } as never }),
      event(3, { case: "eventWaitStarted", value: { seq: 1, eventId: "approval" } as never }),
    );
    run.send(inputs.externalEvent("approval", "yes"));
    const ex = await run.replayed(wf);
    expect(resultOf(await run.task(ex))).toBe("yes");
  });

  it("streams a name with ctx.events: events that arrive while the body works are buffered, not lost", async () => {
    const wf: Workflow = async (ctx) => {
      const seen: unknown[] = [];
      for await (const item of ctx.events("add")) {
        seen.push(item);
        await ctx.executeActivity("store", item);
        if (seen.length === 3) break;
      }
      return seen;
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["wait add#1"]);
    run.send(inputs.namedEvent("add", "1", "apple"));
    expect(summarize(await run.task(ex))).toEqual(["schedule store#2"]);
    // Two more arrive while the activity runs: the loop takes them from the buffer without waiting.
    run.send(inputs.namedEvent("add", "2", "pear"), inputs.namedEvent("add", "3", "plum"));
    expect(await run.task(ex)).toEqual([]);
    run.send(inputs.activityCompleted(2));
    expect(summarize(await run.task(ex))).toEqual(["schedule store#3"]);
    run.send(inputs.activityCompleted(3));
    expect(summarize(await run.task(ex))).toEqual(["schedule store#4"]);
    run.send(inputs.activityCompleted(4));
    expect(resultOf(await run.task(ex))).toEqual(["apple", "pear", "plum"]);
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("ctx.onEvent gets the buffered events first, then each new one no wait takes", async () => {
    const wf: Workflow = async (ctx) => {
      const items: unknown[] = [];
      const ids: string[] = [];
      ctx.onEvent("add", (item, e) => {
        items.push(item);
        ids.push(e.id);
      });
      const total = await ctx.waitForEvent("checkout");
      return { items, ids, total };
    };
    const run = new FakeRun().send(inputs.namedEvent("add", "a1", "apple"));
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["wait checkout#1"]);
    run.send(inputs.namedEvent("add", "a2", "pear"), inputs.namedEvent("checkout", "c", 2));
    expect(resultOf(await run.task(ex))).toEqual({ items: ["apple", "pear"], ids: ["a1", "a2"], total: 2 });
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("a handler runs as its event is delivered: code resumed by the same task already sees its state", async () => {
    const wf: Workflow = async (ctx) => {
      let stop = false;
      ctx.onEvent("stop", () => {
        stop = true;
      });
      // The activity's completion comes first in the task, the event second: the handler still ran
      // before the code resumes, so the check below sees it.
      await ctx.executeActivity("work");
      return stop ? "stopped" : ctx.continueAsNew("again");
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["schedule work#1"]);
    run.send(inputs.activityCompleted(1), inputs.namedEvent("stop", "s1"));
    expect(resultOf(await run.task(ex))).toBe("stopped");
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("an error thrown by a handler is one escaping workflow code: a bug fails the task, an ApplicationFailure the run", async () => {
    const wf: Workflow = async (ctx) => {
      ctx.onEvent<string>("bad", (kind) => {
        if (kind === "bug") throw new TypeError("handler broke");
        throw ApplicationFailure.nonRetryable("refused on purpose");
      });
      return ctx.waitForEvent("never");
    };
    const bug = new FakeRun();
    const buggy = await bug.replayed(wf);
    await bug.task(buggy);
    bug.send(inputs.namedEvent("bad", "b1", "bug"));
    await expect(bug.task(buggy)).rejects.toThrow("handler broke");

    const run = new FakeRun();
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.namedEvent("bad", "b1", "deliberate"));
    expect(failureOf(await run.task(ex)).message).toBe("refused on purpose");
  });

  it("a handler's await cancelled with the run does not end the run: the main code's cleanup runs first", async () => {
    const wf: Workflow = async (ctx) => {
      ctx.onEvent("ping", async () => {
        await ctx.sleep("1h");
      });
      try {
        await ctx.executeActivity("work");
      } catch (err) {
        if (!(err instanceof CancelledFailure)) throw err;
        await ctx.nonCancellable(() => ctx.executeActivity("compensate"));
        throw err;
      }
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["schedule work#1"]);
    run.send(inputs.namedEvent("ping", "p1"));
    expect(summarize(await run.task(ex))).toEqual(["timer#2"]);
    // The cancellation rejects the handler's sleep and the main code's activity in one drain.
    run.send(inputs.cancelRequested());
    expect(summarize(await run.task(ex))).toEqual(["cancel activity#1", "cancel timer#2", "schedule compensate#3"]);
    run.send(inputs.activityCompleted(3));
    expect(summarize(await run.task(ex))).toEqual(["cancel"]);
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("continue-as-new carries the unconsumed events, in the order received, with id, name and payload", async () => {
    const wf: Workflow = async (ctx) => {
      const first = await ctx.waitForEvent("add");
      await ctx.executeActivity("store", first);
      return ctx.continueAsNew({ after: first });
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["wait add#1"]);
    run.send(inputs.namedEvent("add", "i1", "apple"));
    expect(summarize(await run.task(ex))).toEqual(["schedule store#2"]);
    run.send(inputs.namedEvent("add", "i2", "pear"), inputs.namedEvent("note", "n1", { text: "hi" }), inputs.namedEvent("add", "i3", "plum"));
    expect(await run.task(ex)).toEqual([]);
    run.send(inputs.activityCompleted(2));
    const [command] = await run.task(ex);
    if (command?.command.case !== "continueAsNew") throw new Error("expected continue_as_new");
    const carried = command.command.value.carriedEvents.map((c) => [c.eventName, c.eventId, decodePayload(c.payload)]);
    expect(carried).toEqual([
      ["add", "i2", "pear"],
      ["note", "n1", { text: "hi" }],
      ["add", "i3", "plum"],
    ]);
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("a handler that continues as new mid-task: the task's later events are carried, not consumed", async () => {
    const seen: unknown[] = [];
    const wf: Workflow = async (ctx) => {
      ctx.onEvent<number>("item", (n) => {
        seen.push(n);
        if (n === 100) void ctx.continueAsNew("next");
      });
      return ctx.waitForEvent("never");
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["wait never#1"]);
    run.send(inputs.namedEvent("item", "i100", 100), inputs.namedEvent("item", "i101", 101), inputs.namedEvent("never", "n1"));
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["continue-as-new"]);
    const command = commands[0]!.command;
    if (command.case !== "continueAsNew") throw new Error("expected continue_as_new");
    const carried = command.value.carriedEvents.map((c) => [c.eventName, c.eventId, decodePayload(c.payload)]);
    // Events after the call reach neither the handler nor a wait: the next run gets them.
    expect(carried).toEqual([
      ["item", "i101", 101],
      ["never", "n1", undefined],
    ]);
    expect(seen).toEqual([100]);
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("drops the time-out of a timed wait an event satisfied, and ignores one that fires anyway", async () => {
    const wf: Workflow = async (ctx) => {
      const got = await ctx.waitForEvent("x", { timeout: "1m" });
      await ctx.sleep("1h");
      return got;
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["wait x#1"]);
    run.send(inputs.namedEvent("x", "e1", "ok"));
    // The server keeps an event wait's time-out (one name, many events): the SDK drops it.
    expect(summarize(await run.task(ex))).toEqual(["cancel timer#1", "timer#2"]);
    // Had it fired first (a race), it changes nothing.
    run.send(inputs.eventWaitTimedOut(1));
    expect(await run.task(ex)).toEqual([]);
    run.send(inputs.timerFired(2));
    expect(resultOf(await run.task(ex))).toBe("ok");
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("replays a history from before the drop existed (no cancel_timer recorded for a satisfied timed wait)", async () => {
    const wf: Workflow = async (ctx) => {
      const got = await ctx.waitForEvent("approval", { timeout: "1h" });
      await ctx.executeActivity("next");
      return got;
    };
    const run = new FakeRun();
    run.history.push(
      event(2, { case: "workflowTaskCompleted", value: { attempt: 1 } as never }),
      event(3, { case: "eventWaitStarted", value: { seq: 1, eventId: "approval" } as never }),
      event(4, inputs.externalEvent("approval", "yes")),
      event(5, { case: "workflowTaskCompleted", value: { attempt: 1 } as never }),
      event(6, { case: "activityScheduled", value: { seq: 2, activityName: "next" } as never }),
    );
    const ex = await run.replayed(wf);
    run.send(inputs.activityCompleted(2));
    expect(resultOf(await run.task(ex))).toBe("yes");
  });
});

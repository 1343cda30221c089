/**
 * Replay core, no I/O: query handlers (workflow/query.ts) read the execution
 * without changing it. A handler that tries to issue a command or draw a
 * random number fails the query and leaves the run's commands and random
 * sequence exactly as they were; `__dex_pending` lists the awaits.
 */
import { create } from "@bufbuild/protobuf";
import { DexError, QueryTaskSchema, type HistoryEvent } from "@dex/proto";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../src/common/logger.js";
import { decodePayload } from "../src/common/payload.js";
import { createActivationGate } from "../src/worker/deadlock-watchdog.js";
import { guardedRunner, installDeterminismGuard } from "../src/worker/determinism-guard.js";
import { answerQueryTask, type QueryWorkerDeps } from "../src/worker/query-tasks.js";
import { RunCache } from "../src/worker/run-cache.js";
import { QueryFailedError } from "../src/workflow/query.js";
import type { Workflow } from "../src/workflow/types.js";
import { FakeRun, inputs, resultOf, summarize, testInfo } from "./history-builder.js";

installDeterminismGuard();

/** Records a random number, waits for an activity and an event, then returns what it saw. */
const counter: Workflow = async (ctx) => {
  let seen = 0;
  ctx.setQueryHandler("seen", (plus: number | undefined) => seen + (plus ?? 0));
  ctx.setQueryHandler("sleepy", () => ctx.sleep("1s"));
  ctx.setQueryHandler("dice", () => Math.random());
  ctx.setQueryHandler("async", async () => seen);
  const step = ctx.executeActivity<number>("step");
  const event = ctx.waitForEvent<number>("bump");
  seen += await step;
  seen += await event;
  return { seen, random: ctx.random() };
};

describe("query handlers", () => {
  it("answer from the state, and a refused command or random draw changes nothing", async () => {
    const run = new FakeRun();
    const live = await run.replayed(counter, guardedRunner);
    expect(summarize(await run.task(live))).toEqual(["schedule step#1", "wait bump#2"]);
    expect(live.query("seen", 1)).toBe(1);
    expect(live.query("__dex_pending", undefined)).toEqual({
      activities: [{ seq: 1, name: "step" }],
      timers: [],
      eventWaits: [{ seq: 2, eventName: "bump" }],
      children: [],
      conditions: 0,
    });
    expect(() => live.query("sleepy", undefined)).toThrow(/ctx\.sleep cannot be used inside a query handler/);
    expect(() => live.query("dice", undefined)).toThrow(/randomness .* cannot be used inside a query handler/);
    expect(() => live.query("async", undefined)).toThrow(/must be synchronous/);
    expect(() => live.query("nope", undefined)).toThrow(QueryFailedError);
    expect(() => live.query("nope", undefined)).toThrow('no query handler "nope"; it has: seen, sleepy, dice, async, __dex_pending');

    run.send(inputs.activityCompleted(1, 2), inputs.externalEvent("bump", 3));
    const commands = await run.task(live);
    // The refused sleep issued no timer, and the random draw is the one a run never queried makes.
    expect(summarize(commands)).toEqual(["complete"]);
    const untouched = new FakeRun();
    const other = await untouched.replayed(counter, guardedRunner);
    await untouched.task(other);
    untouched.send(inputs.activityCompleted(1, 2), inputs.externalEvent("bump", 3));
    expect(resultOf(commands)).toEqual(resultOf(await untouched.task(other)));
    expect(resultOf(commands)).toMatchObject({ seen: 5 });
    // An ended run's final state answers too, from a replay of its whole history.
    const replayed = await run.replayed(counter, guardedRunner);
    expect(replayed.finished).toBe(true);
    expect(replayed.query("seen", 0)).toBe(5);
  });

  it("a handler that returned a promise or hit the guard gets its run evicted from the worker's cache", async () => {
    const waiter: Workflow = async (ctx) => {
      ctx.setQueryHandler("plain", () => "ok");
      ctx.setQueryHandler("register", () => ctx.setUpdateHandler("u", () => 1));
      // Its continuation runs after the handler returned, when the guard is off.
      ctx.setQueryHandler("later", async () => {
        await null;
        void ctx.sleep("1s");
      });
      await ctx.waitForEvent("go");
      return "done";
    };
    const run = new FakeRun();
    const live = await run.replayed(waiter, guardedRunner);
    await run.task(live);
    const cache = new RunCache(10);
    const answers: Array<{ queryId: string; failure?: { message: string } }> = [];
    const deps = {
      connection: { address: "in-process", pause: async () => {}, worker: { respondQueryTask: async (answer: (typeof answers)[number]) => (answers.push(answer), {}) } },
      cache,
      workflows: { waiter },
      taskQueue: "default",
      workerId: "w",
      logger: silentLogger,
      gate: createActivationGate({ timeoutMs: 0, connection: {} as never, logger: silentLogger }),
    } as unknown as QueryWorkerDeps;
    const ask = (queryName: string) => answerQueryTask(create(QueryTaskSchema, { runId: testInfo.runId, queryName, queryId: queryName }), deps);

    cache.put(testInfo.runId, live);
    await ask("plain");
    expect(answers.at(-1)?.failure).toBeUndefined();
    expect(cache.peek(testInfo.runId)).toBe(live);
    await ask("register");
    expect(answers.at(-1)?.failure?.message).toMatch(/ctx\.setUpdateHandler cannot be used inside a query handler/);
    expect(cache.peek(testInfo.runId)).toBeUndefined();

    cache.put(testInfo.runId, live);
    await ask("later");
    expect(answers.at(-1)?.failure?.message).toMatch(/must be synchronous/);
    expect(cache.peek(testInfo.runId)).toBeUndefined();
    // Why: the continuation did issue a timer into the execution, which a cached run would have sent.
    run.send(inputs.externalEvent("go"));
    expect(summarize(await run.task(live))).toContain("timer#2");
  });

  it("a replay for a query reads the history through transient errors, and fails the query when it ends short", async () => {
    const waiter: Workflow = async (ctx) => {
      let got = "nothing";
      ctx.setQueryHandler("got", () => got);
      got = await ctx.waitForEvent<string>("first");
      await ctx.waitForEvent("second");
    };
    const run = new FakeRun();
    const live = await run.replayed(waiter, guardedRunner);
    await run.task(live);
    run.send(inputs.externalEvent("first", "apple"));
    await run.task(live);
    const answers: Array<{ queryId: string; result?: unknown; failure?: { message: string }; workerError?: boolean }> = [];
    /** Serves the history, first failing `outages` reads with UNAVAILABLE and ending it after `upTo` events. */
    const depsServing = (outages: number, upTo: number) =>
      ({
        connection: {
          address: "in-process",
          pause: async () => {},
          worker: { respondQueryTask: async (answer: (typeof answers)[number]) => (answers.push(answer), {}) },
          client: {
            getRunHistory: async (request: { afterSequence: bigint; pageSize: number }) => {
              if (outages-- > 0) throw new DexError("UNAVAILABLE", "the server restarts");
              // One event a page: the read goes on page after page.
              const events: HistoryEvent[] = run.history.filter((e) => e.sequence > request.afterSequence && e.sequence <= BigInt(upTo)).slice(0, 1);
              return { events };
            },
          },
        },
        cache: new RunCache(10),
        workflows: { waiter },
        taskQueue: "default",
        workerId: "w",
        logger: silentLogger,
        gate: createActivationGate({ timeoutMs: 0, connection: {} as never, logger: silentLogger }),
      }) as unknown as QueryWorkerDeps;
    const task = (queryId: string) => create(QueryTaskSchema, { runId: testInfo.runId, workflowName: "waiter", queryName: "got", queryId, historyLength: BigInt(run.history.length) });

    await answerQueryTask(task("through an outage"), depsServing(2, run.history.length));
    expect(answers.at(-1)).toMatchObject({ queryId: "through an outage" });
    expect(answers.at(-1)?.failure).toBeUndefined();
    expect(decodePayload(answers.at(-1)?.result as never)).toBe("apple");

    // The history ends before the event that set "apple": the answer would be "nothing", a state long gone.
    await answerQueryTask(task("short"), depsServing(0, 2));
    expect(answers.at(-1)).toMatchObject({ queryId: "short", workerError: true });
    expect(answers.at(-1)?.failure?.message).toContain(`history of run ${testInfo.runId} ends at event 2; the query expects ${run.history.length} events`);
  });
});

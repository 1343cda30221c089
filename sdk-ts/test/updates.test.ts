/**
 * Updates in the replay core, no I/O (decision 0024): live validation before delivery, rejections
 * kept out of history, handlers that call activities, complete_update when they settle, replay of
 * accepted updates from history, and ctx.allHandlersFinished.
 */
import { describe, expect, it } from "vitest";
import { decodePayload } from "../src/common/payload.js";
import { ApplicationFailure } from "../src/common/errors.js";
import type { Command } from "@dex/proto";
import type { Workflow } from "../src/workflow/types.js";
import { guardedRunner, installDeterminismGuard } from "../src/worker/determinism-guard.js";
import { FakeRun, inputs, resultOf, summarize } from "./history-builder.js";

installDeterminismGuard();

/** Adds items through an update whose handler prices them with an activity; ends on "close". */
const shop: Workflow = async (ctx) => {
  const items: string[] = [];
  let closed = false;
  ctx.setUpdateHandler(
    "add",
    async (sku: string) => {
      const price = await ctx.executeActivity<number>("price", sku);
      items.push(sku);
      return { sku, price, count: items.length };
    },
    {
      validator: (sku: string) => {
        if (typeof sku !== "string") throw new TypeError("sku must be a string");
        if (items.includes(sku)) throw new Error(`${sku} is in the cart already`);
      },
    },
  );
  ctx.setUpdateHandler("fail", async () => {
    throw ApplicationFailure.nonRetryable("refused on purpose", "Refused");
  });
  ctx.setUpdateHandler("close", () => {
    closed = true;
  });
  await ctx.condition(() => closed);
  await ctx.allHandlersFinished();
  return items;
};

function completions(commands: Command[]) {
  return commands.flatMap((c) => (c.command.case === "completeUpdate" ? [c.command.value] : []));
}

describe("updates in the replay core", () => {
  it("validates against the current state before delivering, and keeps rejections out of history", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(shop);
    expect(await run.task(ex)).toEqual([]);

    run.send(inputs.update("u1", "add", "apple"));
    expect(summarize(await run.task(ex))).toEqual(["schedule price#1"]);
    // Activated by hand to read the rejections (FakeRun.task records only what the server would).
    const activation = await ex.activate(
      [inputs.update("u2", "add", 7), inputs.update("u3", "nope")].map((attributes, i) => ({
        $typeName: "dex.v1.HistoryEvent",
        sequence: BigInt(run.history.length + i + 1),
        attributes,
      })) as never,
      undefined,
    );
    expect(activation.commands).toEqual([]);
    expect(activation.rejectedUpdates.map((r) => [r.updateId, r.failure.type, r.failure.message])).toEqual([
      ["u2", "TypeError", "sku must be a string"],
      ["u3", "UpdateHandlerNotFound", 'no update handler named "nope"; the workflow has: add, close, fail'],
    ]);
    expect(activation.expectedHistoryLength).toBe(run.history.length + 1);
  });

  it("a validator is read-only: randomness and commands throw inside it and reject the update, the run is untouched", async () => {
    const sneaky: Workflow = async (ctx) => {
      let done = false;
      const attempts: Record<string, () => unknown> = {
        math: () => Math.random(),
        random: () => ctx.random(),
        uuid: () => ctx.uuid(),
        sleep: () => void ctx.sleep("1h"),
        activity: () => void ctx.executeActivity("charge"),
        status: () => ctx.setStatus("validated"),
      };
      ctx.setUpdateHandler("try", () => "ran", { validator: (what: string) => void attempts[what]!() });
      ctx.setUpdateHandler("done", () => void (done = true));
      await ctx.condition(() => done);
      return ctx.random();
    };
    const run = new FakeRun();
    const ex = await run.replayed(sneaky, guardedRunner);
    expect(await run.task(ex)).toEqual([]);
    const attempts = ["math", "random", "uuid", "sleep", "activity", "status"];
    const activation = await ex.activate(
      attempts.map((what, i) => ({
        $typeName: "dex.v1.HistoryEvent",
        sequence: BigInt(run.history.length + i + 1),
        attributes: inputs.update(`u-${what}`, "try", what),
      })) as never,
      undefined,
    );
    // Nothing issued, every attempt rejected with the reason.
    expect(activation.commands).toEqual([]);
    expect(activation.rejectedUpdates.map((r) => r.failure.message)).toEqual([
      expect.stringMatching(/^randomness .* cannot be used inside an update validator/),
      expect.stringMatching(/^randomness .* cannot be used inside an update validator/),
      expect.stringMatching(/^randomness .* cannot be used inside an update validator/),
      expect.stringMatching(/^ctx\.sleep cannot be used inside an update validator/),
      expect.stringMatching(/^ctx\.activities cannot be used inside an update validator/),
      expect.stringMatching(/^ctx\.setStatus .* cannot be used inside an update validator/),
    ]);
    // The random sequence is the one of a run that never saw these updates, and replay agrees.
    run.send(inputs.update("d", "done"));
    const last = await run.task(ex);
    const clean = new FakeRun();
    const other = await clean.replayed(sneaky, guardedRunner);
    await clean.task(other);
    clean.send(inputs.update("d", "done"));
    expect(resultOf(last)).toEqual(resultOf(await clean.task(other)));
    await expect(run.replayed(sneaky, guardedRunner)).resolves.toMatchObject({ finished: true });
  });

  it("runs an accepted handler as workflow code, answers with complete_update, and replays it", async () => {
    const run = new FakeRun();
    let ex = await run.replayed(shop);
    await run.task(ex);
    run.send(inputs.update("u1", "add", "apple"));
    expect(summarize(await run.task(ex))).toEqual(["schedule price#1"]);
    run.send(inputs.activityCompleted(1, 3), inputs.update("dup", "add", "apple"), inputs.update("f", "fail"));
    const commands = await run.task(ex);
    const done = completions(commands);
    expect(done.map((d) => d.updateId)).toEqual(["u1", "f"]);
    expect(decodePayload(done[0]!.result)).toEqual({ sku: "apple", price: 3, count: 1 });
    expect(done[1]!.failure?.message).toBe("refused on purpose");
    // "dup" was validated after the activity result was delivered and "apple" added: rejected, not in history.
    expect(run.history.some((e) => e.attributes.case === "updateAccepted" && e.attributes.value.updateId === "dup")).toBe(false);

    // A fresh worker replays the accepted updates from history and reaches the same state.
    ex = await run.replayed(shop);
    run.send(inputs.update("c", "close"));
    const last = await run.task(ex);
    expect(completions(last).map((d) => d.updateId)).toEqual(["c"]);
    expect(resultOf(last)).toEqual(["apple"]);
    await expect(run.replayed(shop)).resolves.toMatchObject({ finished: true });
  });

  it("waits for handlers in flight before the workflow completes (allHandlersFinished)", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(shop);
    await run.task(ex);
    run.send(inputs.update("u1", "add", "pear"), inputs.update("c", "close"));
    const commands = await run.task(ex);
    // "close" answered, but the run does not complete while "add" waits for its activity.
    expect(summarize(commands)).toEqual(["schedule price#1", "completeUpdate"]);
    run.send(inputs.activityCompleted(1, 2));
    const last = await run.task(ex);
    expect(completions(last).map((d) => d.updateId)).toEqual(["u1"]);
    expect(resultOf(last)).toEqual(["pear"]);
  });

  it("rejects an update that reaches a workflow which already finished in the same task", async () => {
    const quick: Workflow = async (ctx) => {
      ctx.setUpdateHandler("x", () => 1);
      return "done";
    };
    const run = new FakeRun();
    const ex = await run.replayed(quick);
    // The first task: run_started (trailing) plus an update sent right after the start.
    const first = await ex.activate(
      [{ $typeName: "dex.v1.HistoryEvent", sequence: 2n, attributes: inputs.update("late", "x") } as never],
      undefined,
    );
    expect(resultOf(first.commands)).toBe("done");
    expect(first.rejectedUpdates.map((r) => r.failure.type)).toEqual(["WorkflowFinished"]);
  });
});

describe("updates due after the code continued as new (decision 0031)", () => {
  /** Continues as new when its activity returns; handles "bump" until then. */
  const rolling: Workflow = async (ctx, round: number) => {
    let bumps = 0;
    ctx.setUpdateHandler("bump", () => ++bumps);
    ctx.setUpdateHandler("roll", () => ctx.continueAsNew(round + 1));
    await ctx.executeActivity("work");
    return ctx.continueAsNew(round + 1);
  };

  function continued(commands: Command[]) {
    const last = commands.at(-1)?.command;
    if (last?.case !== "continueAsNew") throw new Error(`expected continue_as_new last, got ${last?.case}`);
    return last.value;
  }

  it("names the updates of the continuing task in the command instead of rejecting them, and records none", async () => {
    const run = new FakeRun(1);
    const ex = await run.replayed(rolling);
    expect(summarize(await run.task(ex))).toEqual(["schedule work#1"]);
    // The activity result makes the code continue as new before the updates of the same block are due.
    run.send(inputs.activityCompleted(1, "ok"), inputs.update("u1", "bump"), inputs.update("u2", "nope"));
    const before = run.history.length;
    const commands = await run.task(ex); // FakeRun checks expectedHistoryLength against what it recorded
    expect(continued(commands).undeliveredUpdateIds).toEqual(["u1", "u2"]);
    expect(completions(commands)).toEqual([]);
    expect(run.history.slice(before).map((e) => e.attributes.case)).toEqual(["activityCompleted", "workflowTaskCompleted", "runContinuedAsNew"]);
    // What the server records replays without a divergence.
    await expect(run.replayed(rolling)).resolves.toMatchObject({ finished: true });
  });

  it("reports nothing undelivered when it had not ended, and still rejects updates after another ending (WorkflowFinished)", async () => {
    const run = new FakeRun(1);
    const ex = await run.replayed(rolling);
    await run.task(ex);
    // One update's handler continues as new: the one after it in the block is not seen, the one before was.
    run.send(inputs.update("b", "bump"), inputs.update("r", "roll"), inputs.update("after", "bump"));
    const commands = await run.task(ex);
    expect(continued(commands).undeliveredUpdateIds).toEqual(["after"]);
    const accepted = run.history.flatMap((e) => (e.attributes.case === "updateAccepted" ? [e.attributes.value.updateId] : []));
    expect(accepted).toEqual(["b", "r"]);

    const quick: Workflow = async (ctx) => {
      ctx.setUpdateHandler("x", () => 1);
      return "done";
    };
    const other = await new FakeRun().replayed(quick);
    const first = await other.activate(
      [{ $typeName: "dex.v1.HistoryEvent", sequence: 2n, attributes: inputs.update("late", "x") } as never],
      undefined,
    );
    expect(first.rejectedUpdates.map((r) => r.failure.type)).toEqual(["WorkflowFinished"]);
  });
});

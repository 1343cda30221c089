import { randomUUID as importedRandomUUID } from "node:crypto";
import * as nodeCrypto from "node:crypto";
import { describe, expect, it } from "vitest";
import { ApplicationFailure, CancelledFailure, DeterminismViolationError } from "../src/common/errors.js";
import { guardedRunner, installDeterminismGuard } from "../src/worker/determinism-guard.js";
import { TaskFailureLog } from "../src/worker/task-failure-log.js";
import { setWorkflowOptions } from "../src/workflow/failure-rule.js";
import type { Workflow } from "../src/workflow/types.js";
import { FakeRun, inputs, summarize } from "./history-builder.js";

installDeterminismGuard();

/** Reads a field of its input that the first version assumes is always there. */
const buggy: Workflow<{ customer?: { name: string } }, string> = async (ctx, input) => {
  await ctx.executeActivity("reserve");
  return `hello ${input.customer!.name.toUpperCase()}`;
};
const fixed: Workflow<{ customer?: { name: string } }, string> = async (ctx, input) => {
  await ctx.executeActivity("reserve");
  return `hello ${input.customer?.name.toUpperCase() ?? "guest"}`;
};

describe("an error thrown by workflow code", () => {
  it("a TypeError fails the task, not the run; fixed code replays the same history and completes", async () => {
    const run = new FakeRun({});
    const ex = await run.replayed(buggy);
    expect(summarize(await run.task(ex))).toEqual(["schedule reserve#1"]);
    run.send(inputs.activityCompleted(1, "ok"));
    const error = await run.task(ex).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).stack).toContain("buggy");
    expect(ex.finished).toBe(false);
    // The failed task wrote nothing: its input is handed out again, to the fixed code.
    run.send(inputs.activityCompleted(1, "ok"));
    const redeployed = await run.replayed(fixed);
    expect(summarize(await run.task(redeployed))).toEqual(["complete"]);
  });

  it("a non-Error value thrown fails the task", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(async () => {
      throw "a string";
    });
    await expect(run.task(ex)).rejects.toThrow("a string");
  });

  it("ApplicationFailure, a dex failure let escape, and a cancellation end the run", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(async () => {
      throw ApplicationFailure.nonRetryable("no such customer", "UnknownCustomer");
    });
    const [cmd] = await run.task(ex);
    expect(cmd?.command.case).toBe("failRun");

    const cancelled = new FakeRun();
    const ex2 = await cancelled.replayed(async (ctx) => ctx.sleep("1h"));
    await cancelled.task(ex2);
    cancelled.send(inputs.cancelRequested("stop"));
    expect(summarize(await cancelled.task(ex2))).toEqual(["cancel timer#1", "cancel"]);

    // A CancelledFailure without a cancellation request is a deliberate failure too.
    const own = new FakeRun();
    const ex3 = await own.replayed(async () => {
      throw new CancelledFailure("gave up");
    });
    expect((await own.task(ex3))[0]?.command.case).toBe("failRun");
  });

  it("failWorkflowOn lists error classes or names that fail the run", async () => {
    const byClass = setWorkflowOptions(async () => JSON.parse("{"), { failWorkflowOn: [SyntaxError] });
    const run = new FakeRun();
    const [cmd] = await run.task(await run.replayed(byClass));
    expect(cmd?.command.case).toBe("failRun");
    if (cmd?.command.case === "failRun") expect(cmd.command.value.failure?.type).toBe("SyntaxError");

    const byName = setWorkflowOptions(
      async () => {
        const error = new Error("the order is inconsistent");
        error.name = "OrderError";
        throw error;
      },
      { failWorkflowOn: ["OrderError"] },
    );
    const run2 = new FakeRun();
    expect((await run2.task(await run2.replayed(byName)))[0]?.command.case).toBe("failRun");

    // Other errors still fail the task.
    const other = setWorkflowOptions(async (_ctx, input: { x?: { y: number } }) => input.x!.y, { failWorkflowOn: ["OrderError"] });
    const run3 = new FakeRun();
    await expect(run3.task(await run3.replayed(other))).rejects.toBeInstanceOf(TypeError);
    expect(() => setWorkflowOptions(other, { failWorkflowOn: [""] })).toThrow(/failWorkflowOn/);
  });

  it("a determinism violation fails the task even when failWorkflowOn lists Error", async () => {
    const wf = setWorkflowOptions(
      async () => {
        await new Promise((resolve) => setTimeout(resolve, 1));
      },
      { failWorkflowOn: [Error] },
    );
    const run = new FakeRun();
    await expect(run.task(await run.replayed(wf, guardedRunner))).rejects.toBeInstanceOf(DeterminismViolationError);
  });
});

describe("the determinism guard's newer APIs", () => {
  const cases: Array<[string, () => unknown, RegExp]> = [
    ["crypto.randomUUID", () => crypto.randomUUID(), /crypto\.randomUUID.*ctx\.uuid\(\)/],
    ["node:crypto randomUUID (imported binding)", () => importedRandomUUID(), /crypto\.randomUUID/],
    ["crypto.getRandomValues", () => crypto.getRandomValues(new Uint8Array(4)), /crypto\.getRandomValues.*ctx\.random\(\)/],
    ["node:crypto getRandomValues", () => nodeCrypto.getRandomValues(new Uint8Array(4)), /crypto\.getRandomValues/],
    ["performance.now", () => performance.now(), /performance\.now.*ctx\.now\(\)/],
    ["setImmediate", () => new Promise((resolve) => setImmediate(resolve)), /setImmediate was called/],
  ];
  for (const [name, call, message] of cases) {
    it(`${name} in workflow code fails the task, even when caught`, async () => {
      const wf: Workflow = async () => {
        try {
          await call();
        } catch {
          // swallowed: the task fails anyway
        }
        return "done";
      };
      const run = new FakeRun();
      const error = await run.task(await run.replayed(wf, guardedRunner)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DeterminismViolationError);
      expect((error as Error).message).toMatch(message);
    });
  }

  it("outside workflow code (activities, the worker, the replay core's drain) they keep working", async () => {
    expect(crypto.randomUUID()).toMatch(/^[0-9a-f-]{36}$/);
    expect(importedRandomUUID()).not.toBe(importedRandomUUID());
    expect(crypto.getRandomValues(new Uint8Array(8))).toHaveLength(8);
    expect(nodeCrypto.getRandomValues(new Uint8Array(2))).toHaveLength(2);
    expect(performance.now()).toBeGreaterThan(0);
    await new Promise((resolve) => setImmediate(resolve));
    // The core drains with setImmediate after every block: a guarded workflow with many blocks completes.
    const run = new FakeRun();
    const ex = await run.replayed(async (ctx) => {
      for (let i = 0; i < 3; i++) await ctx.sleep("1s");
      return ctx.uuid();
    }, guardedRunner);
    for (let seq = 1; seq <= 3; seq++) {
      await run.task(ex);
      run.send(inputs.timerFired(seq));
    }
    expect(summarize(await run.task(ex))).toEqual(["complete"]);
  });
});

describe("TaskFailureLog", () => {
  it("logs a run's failure once, then every N attempts, and again after a success", () => {
    const log = new TaskFailureLog(5);
    const decisions = [1, 2, 3, 4, 5, 6, 10].map((attempt) => log.onFailure("r1", attempt));
    expect(decisions).toEqual(["first", undefined, undefined, undefined, "repeat", undefined, "repeat"]);
    // A worker that restarted (or another worker) sees the run at attempt 7 for the first time: it logs.
    expect(new TaskFailureLog(5).onFailure("r1", 7)).toBe("first");
    log.onSuccess("r1");
    expect(log.onFailure("r1", 1)).toBe("first");
    expect(log.onFailure("r2", 3)).toBe("first");
  });

  it("forgets the oldest run past its capacity", () => {
    const log = new TaskFailureLog(10, 2);
    log.onFailure("a", 1);
    log.onFailure("b", 1);
    log.onFailure("c", 1);
    expect(log.onFailure("a", 2)).toBe("first");
    expect(log.onFailure("c", 2)).toBeUndefined();
  });
});

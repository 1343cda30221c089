/**
 * Replay core, no I/O: child workflows (success, failure, start failure) and
 * cancellation (pending awaits rejected with cancel commands, non-cancellable
 * work going on, and the delivery order that lets a cancellation reach every
 * await the code is blocked on).
 */
import { describe, expect, it } from "vitest";
import { RunStatus } from "@dex/proto";
import {
  ApplicationFailure,
  CancelledFailure,
  ChildWorkflowFailure,
  ChildWorkflowStartFailure,
} from "../src/common/errors.js";
import { errorToFailure } from "../src/common/failure.js";
import { decodePayload } from "../src/common/payload.js";
import type { Workflow, WorkflowContext } from "../src/workflow/types.js";
import { FakeRun, failureOf, inputs, resultOf, summarize } from "./history-builder.js";

async function shipment(_ctx: WorkflowContext, request: { orderId: string }): Promise<{ tracking: string }> {
  return { tracking: `T-${request.orderId}` };
}

describe("child workflows", () => {
  const parent: Workflow = async (ctx) => {
    try {
      const { tracking } = await ctx.child(shipment, { orderId: "o1" }, { instanceId: "ship-o1", labels: { kind: "ship" } });
      return { tracking };
    } catch (err) {
      if (err instanceof ChildWorkflowFailure) {
        return { failed: err.status, runId: err.runId, instanceId: err.instanceId, workflow: err.workflowName, cause: err.cause.name, type: (err.cause as ApplicationFailure).type };
      }
      if (err instanceof ChildWorkflowStartFailure) return { notStarted: err.instanceId, type: err.type };
      throw err;
    }
  };

  async function started(): Promise<{ run: FakeRun; ex: Awaited<ReturnType<FakeRun["replayed"]>> }> {
    const run = new FakeRun();
    const ex = await run.replayed(parent);
    const commands = await run.task(ex);
    expect(summarize(commands)).toEqual(["child shipment#1"]);
    const c = commands[0]!.command;
    if (c.case !== "startChildRun") throw new Error("expected start_child_run");
    expect(c.value).toMatchObject({ instanceId: "ship-o1", labels: { kind: "ship" } });
    expect(decodePayload(c.value.input)).toEqual({ orderId: "o1" });
    return { run, ex };
  }

  it("resolves with the child's result", async () => {
    const { run, ex } = await started();
    run.send(inputs.childRunStarted(1, "child-run"));
    expect(await run.task(ex)).toEqual([]);
    run.send(inputs.childRunCompleted(1, { tracking: "T-o1" }));
    expect(resultOf(await run.task(ex))).toEqual({ tracking: "T-o1" });
    await expect(run.replayed(parent)).resolves.toMatchObject({ finished: true });
  });

  it("rejects with ChildWorkflowFailure carrying the child's run id, status and rebuilt cause", async () => {
    const { run, ex } = await started();
    const broke = errorToFailure(ApplicationFailure.nonRetryable("courier refused", "Undeliverable"));
    run.send(inputs.childRunStarted(1, "child-run"), inputs.childRunEnded(1, RunStatus.FAILED, broke));
    expect(resultOf(await run.task(ex))).toEqual({
      failed: "FAILED",
      runId: "child-run",
      instanceId: "ship-o1",
      workflow: "shipment",
      cause: "ApplicationFailure",
      type: "Undeliverable",
    });
    await expect(run.replayed(parent)).resolves.toMatchObject({ finished: true });
  });

  it("reports a cancelled child with its CancelledFailure as the cause", async () => {
    const { run, ex } = await started();
    run.send(inputs.childRunStarted(1), inputs.childRunEnded(1, RunStatus.CANCELLED, errorToFailure(new CancelledFailure("stop"))));
    expect(resultOf(await run.task(ex))).toMatchObject({ failed: "CANCELLED", cause: "CancelledFailure" });
  });

  it("rejects with ChildWorkflowStartFailure when the instance id has an open run", async () => {
    const { run, ex } = await started();
    const conflict = errorToFailure(new ApplicationFailure("instance ship-o1 has an open run", { type: "InstanceIdConflict" }));
    run.send(inputs.childRunStartFailed(1, conflict));
    expect(resultOf(await run.task(ex))).toEqual({ notStarted: "ship-o1", type: "InstanceIdConflict" });
    await expect(run.replayed(parent)).resolves.toMatchObject({ finished: true });
  });

  it("fails the parent with the ChildWorkflowFailure when it does not catch it", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(async (ctx) => ctx.child("shipment", {}, { instanceId: "s-1" }));
    await run.task(ex);
    run.send(inputs.childRunEnded(1, RunStatus.TERMINATED, errorToFailure(new Error("operator"))));
    const error = failureOf(await run.task(ex));
    expect(error).toBeInstanceOf(ChildWorkflowFailure);
    expect(error).toMatchObject({ status: "TERMINATED", instanceId: "s-1", workflowName: "shipment" });
  });

  it("rejects a call without an instance id, issuing nothing", async () => {
    const run = new FakeRun();
    const wf: Workflow = async (ctx) => ctx.child(shipment, { orderId: "x" }, {} as never).catch((e: unknown) => (e as Error).message);
    expect(resultOf(await run.task(await run.replayed(wf)))).toMatch(/options.instanceId is required/);
  });
});

describe("cancellation", () => {
  // One of each kind of await, plus cleanup that must survive the cancellation.
  const busy: Workflow = async (ctx) => {
    const settled = await Promise.allSettled([
      ctx.executeActivity("slow"),
      ctx.sleep("1h"),
      ctx.waitForEvent("go", { timeout: "1d" }),
      ctx.child("sub", null, { instanceId: "sub-1" }),
      ctx.child("free", null, { instanceId: "free-1", parentClosePolicy: "abandon" }),
      ctx.nonCancellable(() => ctx.executeActivity("cleanup")),
    ]);
    return { cancelled: ctx.cancellationRequested, outcomes: settled.map((s) => (s.status === "fulfilled" ? s.value : (s.reason as Error).name)) };
  };

  it("rejects pending cancellable awaits with cancel commands in seq order while non-cancellable work continues", async () => {
    const run = new FakeRun();
    const ex = await run.replayed(busy);
    expect(summarize(await run.task(ex))).toEqual(["schedule slow#1", "timer#2", "wait go#3", "child sub#4", "child free#5", "schedule cleanup#6"]);
    run.send(inputs.cancelRequested("customer changed their mind"));
    // The timed event wait drops its time-out; nothing for the abandoned child (left running).
    expect(summarize(await run.task(ex))).toEqual(["cancel activity#1", "cancel timer#2", "cancel timer#3", "cancel child#4"]);
    // The cancelled work's late outcomes are delivered and ignored; the cleanup's result is not.
    run.send(inputs.activityCompleted(1, "late"), inputs.childRunEnded(4, RunStatus.CANCELLED), inputs.activityCompleted(6, "cleaned"));
    expect(resultOf(await run.task(ex))).toEqual({
      cancelled: true,
      outcomes: ["CancelledFailure", "CancelledFailure", "CancelledFailure", "CancelledFailure", "CancelledFailure", "cleaned"],
    });
    await expect(run.replayed(busy)).resolves.toMatchObject({ finished: true });
  });

  it("ends the run cancelled when cleanup in a non-cancellable scope rethrows the CancelledFailure", async () => {
    const wf: Workflow = async (ctx) => {
      try {
        return await ctx.executeActivity("block");
      } catch (err) {
        if (!(err instanceof CancelledFailure)) throw err;
        await ctx.nonCancellable(() => ctx.executeActivity("cleanup"));
        throw err;
      }
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.cancelRequested());
    expect(summarize(await run.task(ex))).toEqual(["cancel activity#1", "schedule cleanup#2"]);
    run.send(inputs.activityCompleted(2));
    expect(summarize(await run.task(ex))).toEqual(["cancel"]);
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("reaches awaits the code starts in reaction to the same task's other inputs", async () => {
    const wf: Workflow = async (ctx) => {
      await ctx.executeActivity("a");
      return ctx.executeActivity("b");
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.cancelRequested(), inputs.activityCompleted(1));
    expect(summarize(await run.task(ex))).toEqual(["schedule b#2", "cancel activity#2", "cancel"]);
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("reaches a run cancelled before its first task, even past a resolved await", async () => {
    const wf: Workflow = async (ctx) => {
      const id = await ctx.sideEffect(() => "id-1");
      return ctx.executeActivity("work", id);
    };
    const run = new FakeRun().send(inputs.cancelRequested("too late"));
    const ex = await run.replayed(wf);
    expect(summarize(await run.task(ex))).toEqual(["side effect#1", "schedule work#2", "cancel activity#2", "cancel"]);
    await expect(run.replayed(wf)).resolves.toMatchObject({ finished: true });
  });

  it("does not crash on a cancelled call the code never awaited", async () => {
    const wf: Workflow = async (ctx) => {
      void ctx.executeActivity("fire-and-forget");
      return ctx.waitForEvent("done").catch(() => "stopped");
    };
    const run = new FakeRun();
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.cancelRequested());
    expect(summarize(await run.task(ex))).toEqual(["cancel activity#1", "complete"]);
  });
});

describe("a cancellation and continue-as-new in one task (decision 0031)", () => {
  const continueOf = (commands: Awaited<ReturnType<FakeRun["task"]>>) => {
    const last = commands.at(-1)?.command;
    if (last?.case !== "continueAsNew") throw new Error(`expected continue-as-new last, got ${last?.case}`);
    return last.value;
  };

  it("says the cancel was delivered when the code saw it and continued anyway", async () => {
    const wf: Workflow = async (ctx, round: number) => {
      await ctx.waitForEvent("next").catch((err) => {
        if (!(err instanceof CancelledFailure)) throw err;
      });
      return ctx.continueAsNew(round + 1);
    };
    const run = new FakeRun(1);
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.cancelRequested());
    // The server must not carry this cancel into the next run: the code handled it.
    expect(continueOf(await run.task(ex)).cancelRequestDelivered).toBe(true);
  });

  it("leaves the flag off when the code continued before the cancel reached it", async () => {
    const wf: Workflow = async (ctx, round: number) => {
      await ctx.waitForEvent("next");
      return ctx.continueAsNew(round + 1);
    };
    const run = new FakeRun(1);
    const ex = await run.replayed(wf);
    await run.task(ex);
    run.send(inputs.namedEvent("next", "e1"), inputs.cancelRequested());
    // The code ended on the event first: the server carries the cancel to the next run.
    expect(continueOf(await run.task(ex)).cancelRequestDelivered).toBe(false);
  });
});

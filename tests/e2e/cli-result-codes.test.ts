/**
 * `dex workflow result` exits with a code per outcome (documented in its --help), so a script
 * can branch on it: the compiled `dex` as a process against a real server and workers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApplicationFailure, type WorkflowContext } from "@dex/sdk";
import { startHarness, type Harness } from "../support/harness.js";
import { runDex } from "../support/server-process.js";

async function done(_ctx: WorkflowContext, input: string) {
  return { echoed: input };
}

async function broken(_ctx: WorkflowContext) {
  throw ApplicationFailure.nonRetryable("boom", "Broken");
}

async function waiting(ctx: WorkflowContext) {
  return ctx.waitForEvent("never-sent");
}

describe("dex workflow result exit codes", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ done, broken, waiting });
  });

  afterAll(async () => {
    await h?.close();
  });

  const result = (ref: string, ...flags: string[]) => runDex(["workflow", "result", ref, "--address", h.server.address, ...flags]);

  it("0 for COMPLETED, with the result", async () => {
    await h.client.start(done, { instanceId: "codes-done", input: "hi" });
    const out = await result("codes-done", "--wait");
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/status:\s+COMPLETED/);
    expect(out.stdout).toContain(`{"echoed":"hi"}`);
  });

  it("3 for FAILED, with the failure", async () => {
    await h.client.start(broken, { instanceId: "codes-broken" });
    const out = await result("codes-broken", "--wait", "--json");
    expect(out.code).toBe(3);
    const view = JSON.parse(out.stdout) as { status: string; failure?: { message?: string } };
    expect(view.status).toBe("FAILED");
    expect(JSON.stringify(view.failure)).toContain("boom");
  });

  it("7 while the run has not ended, 4 once cancelled", async () => {
    const handle = await h.client.start(waiting, { instanceId: "codes-cancelled" });
    const open = await result("codes-cancelled");
    expect(open.code).toBe(7);
    await handle.cancel("test");
    const out = await result("codes-cancelled", "--wait");
    expect(out.code).toBe(4);
    expect(out.stdout).toMatch(/status:\s+CANCELLED/);
  });

  it("5 for TERMINATED", async () => {
    const handle = await h.client.start(waiting, { instanceId: "codes-terminated" });
    await handle.terminate("test");
    const out = await result("codes-terminated", "--wait");
    expect(out.code).toBe(5);
    expect(out.stdout).toMatch(/status:\s+TERMINATED/);
  });

  it("1 when there is no such run, with one line", async () => {
    const out = await result("codes-no-such-run");
    expect(out.code).toBe(1);
    expect(out.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("documents the codes in --help", async () => {
    const help = await runDex(["workflow", "result", "--help"]);
    expect(help.code).toBe(0);
    for (const line of [/0\s+COMPLETED/, /3\s+FAILED/, /4\s+CANCELLED/, /5\s+TERMINATED/, /6\s+CONTINUED_AS_NEW/, /7\s+not ended yet/]) {
      expect(help.stdout).toMatch(line);
    }
  });
});

/**
 * Retention end to end: runs completed by a real worker disappear once their
 * queue's retention has passed, runs of a keep-forever queue stay, and the
 * compiled `dex` sets retentions, shows them, deletes a run and refuses bad
 * input with one line.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError, TaskQueueType } from "@dex/proto";
import type { WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";
import { runDex } from "../support/server-process.js";

async function echo(_ctx: WorkflowContext, input: string) {
  return input;
}

async function waiting(ctx: WorkflowContext) {
  return ctx.waitForEvent("never-sent");
}

async function describeCode(h: Harness, runId: string): Promise<string> {
  try {
    await h.client.raw.client.describeRun({ run: { target: { case: "runId", value: runId } } });
    return "OK";
  } catch (err) {
    return DexError.from(err).code;
  }
}

describe("retention end to end", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    // Server default 1 s, swept every 200 ms: completed runs of `default` go within about a second.
    h = await startHarness({ defaultRetentionSeconds: 1, retentionSweepIntervalMs: 200 });
    await h.client.raw.queues.createTaskQueue({ name: "keep", type: TaskQueueType.WORKFLOW, retention: { seconds: 0n } });
    h.workflowWorker({ echo, waiting });
    h.workflowWorker({ echo }, { taskQueue: "keep" });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("deletes completed runs past the server default and keeps those of a keep-forever queue and open ones", async () => {
    const swept = await h.client.start(echo, { instanceId: "ret-swept", input: "a" });
    const kept = await h.client.start(echo, { instanceId: "ret-kept", input: "b", taskQueue: "keep" });
    const open = await h.client.start(waiting, { instanceId: "ret-open" });
    expect(await swept.result()).toBe("a");
    expect(await kept.result()).toBe("b");
    await waitFor(async () => (await describeCode(h, swept.runId!)) === "NOT_FOUND", { message: "the completed run to be swept" });
    // The kept run ended before the swept one went: it would have gone in the same pass.
    expect(await describeCode(h, kept.runId!)).toBe("OK");
    expect(await describeCode(h, open.runId!)).toBe("OK");
  });

  it("dex queue create/update/describe/list show and change retention", async () => {
    const address = ["--address", h.server.address];
    const created = await runDex(["queue", "create", "weekly", "--type", "workflow", "--retention", "7d", ...address]);
    expect(created.code).toBe(0);
    const described = await runDex(["queue", "describe", "weekly", "--type", "workflow", ...address]);
    expect(described.stdout).toMatch(/retention:\s+7d\n/);
    const updated = await runDex(["queue", "update", "weekly", "--type", "workflow", "--retention", "default", ...address]);
    expect(updated.stdout).toBe("workflow queue weekly: retention 1s (server default)\n");
    const listed = JSON.parse((await runDex(["queue", "list", "--json", ...address])).stdout) as Array<{ name: string; type: string; retentionSeconds?: number; retentionIsServerDefault?: boolean }>;
    expect(listed.find((q) => q.name === "keep")).toMatchObject({ retentionSeconds: 0, retentionIsServerDefault: false });
    expect(listed.find((q) => q.name === "default" && q.type === "activity")?.retentionSeconds).toBeUndefined();

    for (const [args, message] of [
      [["queue", "create", "bad", "--type", "workflow", "--retention", "1.5h"], /--retention must be 0 \(keep forever\) or a duration such as 30d/],
      [["queue", "create", "bad", "--type", "workflow", "--retention", "3651d"], /at most 3650d/],
      [["queue", "create", "bad", "--type", "activity", "--retention", "1d"], /workflow task queues only/],
      [["queue", "update", "weekly", "--type", "workflow"], /nothing to change/],
    ] as const) {
      const out = await runDex([...args, ...address]);
      expect(out.code, args.join(" ")).not.toBe(0);
      expect(out.stderr).toMatch(message);
      expect(out.stderr.trim().split("\n")).toHaveLength(1);
    }
  });

  it("dex workflow delete deletes an ended run, and refuses an open one with its status", async () => {
    const address = ["--address", h.server.address];
    const ended = await h.client.start(echo, { instanceId: "ret-delete", input: "c", taskQueue: "keep" });
    await ended.result();
    const deleted = await runDex(["workflow", "delete", ended.runId!, ...address]);
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toMatch(new RegExp(`^deleted run ${ended.runId} \\(\\d+ history events\\)\\n$`));
    expect(await describeCode(h, ended.runId!)).toBe("NOT_FOUND");

    const open = await h.client.start(waiting, { instanceId: "ret-delete-open" });
    const refused = await runDex(["workflow", "delete", open.runId!, ...address]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/is (CREATED|RUNNING): only an ended run can be deleted/);
    const byInstance = await runDex(["workflow", "delete", "ret-delete-open", ...address]);
    expect(byInstance.code).not.toBe(0);
    expect(byInstance.stderr).toMatch(/takes a run id/);
  });

  it("dex server refuses a malformed --default-retention with one line", async () => {
    const out = await runDex(["server", "--default-retention", "30 days", "--database-url", h.db.url]);
    expect(out.code).not.toBe(0);
    expect(out.stderr.trim()).toMatch(/^.*--default-retention must be 0 \(keep forever\) or a duration such as 30d, 12h, 90m or 45s, got "30 days"$/);
  });
});

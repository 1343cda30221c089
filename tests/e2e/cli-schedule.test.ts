/**
 * `dex schedule ...` end to end: the compiled CLI against a real server, with
 * a real worker completing the runs a schedule starts; user errors print one
 * line and exit non-zero.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkflowContext } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";
import { runDex } from "../support/server-process.js";

async function nightly(_ctx: WorkflowContext, input: { n: number }) {
  return input.n + 1;
}

describe("dex schedule", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  const dex = (...args: string[]) => runDex(["schedule", ...args, "--address", h.server.address]);

  beforeAll(async () => {
    h = await startHarness();
    h.workflowWorker({ nightly });
  });
  afterAll(() => h?.close());

  it("creates, describes, lists, pauses, triggers, backfills, resumes and deletes a schedule", async () => {
    const created = await dex("create", "cli-every", "--workflow", "nightly", "--input", '{"n":41}', "--every", "1s", "--overlap", "allow-all", "--limit", "1");
    expect(created).toMatchObject({ code: 0, stdout: "created schedule cli-every\n" });
    const fired = await waitFor(async () => {
      const out = await dex("describe", "cli-every", "--json");
      const d = JSON.parse(out.stdout) as { actionCount: number; recentActions: Array<{ runId: string }> };
      return d.actionCount === 1 && d;
    }, { message: "the schedule's first action" });
    expect(await h.client.getHandle({ runId: fired.recentActions[0]!.runId }).result()).toBe(42);

    const described = await dex("describe", "cli-every");
    expect(described.stdout).toMatch(/remaining actions:\s+0/);
    expect(described.stdout).toMatch(/recent actions:/);
    expect((await dex("list")).stdout).toMatch(/cli-every\s+nightly\s+no/);
    expect(await dex("pause", "cli-every", "--note", "deploy")).toMatchObject({ code: 0, stdout: "schedule cli-every paused\n" });
    expect((await dex("trigger", "cli-every")).stdout).toMatch(/^started run [0-9a-f-]{36}\n$/);
    expect((await dex("backfill", "cli-every", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T00:00:01Z")).stdout).toBe(
      "backfill of cli-every: 2 started, 0 buffered, 0 skipped\n",
    );
    expect((await dex("resume", "cli-every")).code).toBe(0);
    expect(await dex("delete", "cli-every")).toMatchObject({ code: 0, stdout: "deleted schedule cli-every\n" });
  });

  it("prints one line and exits non-zero on user errors", async () => {
    for (const [args, message] of [
      [["create", "x", "--workflow", "w"], /give --cron "<expression>" or --every <duration>/],
      [["create", "x", "--workflow", "w", "--every", "soon"], /--every must be a duration like/],
      [["create", "x", "--workflow", "w", "--cron", "61 * * * * *"], /is not a valid cron expression/],
      [["create", "x", "--workflow", "w", "--cron", "0 * * * *", "--time-zone", "Nowhere/City"], /is not a known IANA time zone/],
      [["create", "x", "--workflow", "w", "--every", "1m", "--overlap", "sometimes"], /--overlap must be one of skip/],
      [["describe", "missing"], /schedule "missing" does not exist/],
    ] as const) {
      const out = await dex(...args);
      expect(out.code, args.join(" ")).not.toBe(0);
      expect(out.stderr, args.join(" ")).toMatch(message);
      expect(out.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
    }
  });
});

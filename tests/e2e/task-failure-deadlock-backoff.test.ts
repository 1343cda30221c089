/**
 * Workflow code that never yields stops a worker process on each attempt (decision 0014), so after
 * a WorkflowTaskDeadlock the server backs the run's next workflow task off much further than after
 * an ordinary task failure, doubling per attempt (decision 0032), and describe says why it waits.
 * The looping workers are real processes running the compiled SDK (fixtures/busy-loop-worker.mjs);
 * the back-off is read from what the server recorded (the task's claim time and next attempt
 * time, both on the database clock), never from wall-clock windows.
 */
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import type { WorkflowContext } from "@dex/sdk";
import { startHarness, type Harness } from "../support/harness.js";
import { startProcess, type Started } from "../support/spawned.js";

const fixture = fileURLToPath(new URL("./fixtures/busy-loop-worker.mjs", import.meta.url));
/** The deadlock schedule under test; the ordinary one (100 ms .. 300 ms) is far shorter. */
const AFTER_DEADLOCK = { initialMs: 3_000, maxMs: 600_000 };
/** The server's workflow task lease: a failure the server recorded arrived within it. */
const LEASE_MS = 10_000;

async function spinFixed(ctx: WorkflowContext) {
  await ctx.sleep("10ms");
  return "fixed";
}

interface TaskRow {
  attempt: number;
  /** Next attempt time minus the failed attempt's claim time, on the database clock. */
  backoff_ms: number;
  visible_at: Date;
  leased: boolean;
}

describe("a workflow task that never yields backs off further on each deadlock", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  let sql: postgres.Sql;
  const looping: Started[] = [];
  beforeAll(async () => {
    h = await startHarness({ workflowTaskRetry: { initialMs: 100, maxMs: 300, afterDeadlock: AFTER_DEADLOCK } });
    sql = postgres(h.db.url, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    for (const p of looping) p.child.kill("SIGKILL");
    await sql?.end();
    await h?.close();
  });

  async function deadlockedAttempt(runId: string, attempt: number): Promise<TaskRow> {
    const worker = await startProcess([fixture, h.server.address], /busy-loop worker polling/);
    looping.push(worker);
    await waitFor(() => worker.child.signalCode !== null || worker.child.exitCode !== null, {
      message: `the watchdog to stop looping worker ${attempt}`,
    });
    return waitFor(
      async () => {
        const [row] = await sql<TaskRow[]>`
          select attempt, visible_at, lease_id is not null as leased,
                 (extract(epoch from visible_at - task_time) * 1000)::float8 as backoff_ms
          from dex.workflow_tasks where run_id = ${runId} and last_failure is not null`;
        return row && row.attempt === attempt && !row.leased ? row : undefined;
      },
      { message: `deadlocked attempt ${attempt} to be recorded` },
    );
  }

  it("waits 3 s after the first deadlock, 6 s after the second, and says why", async () => {
    const run = await h.client.start("spin", { instanceId: "deadlock-backoff" });
    const runId = run.runId!;

    const first = await deadlockedAttempt(runId, 1);
    // The failure came after the claim and within the lease: back-off(1) <= next - claim <= back-off(1) + lease.
    expect(first.backoff_ms).toBeGreaterThanOrEqual(AFTER_DEADLOCK.initialMs);
    expect(first.backoff_ms).toBeLessThanOrEqual(AFTER_DEADLOCK.initialMs + LEASE_MS);
    const described = await run.describe();
    expect(described.pendingWorkflowTask?.lastFailure?.type).toBe("WorkflowTaskDeadlock");
    expect(described.pendingWorkflowTask?.nextAttemptTime?.getTime()).toBe(first.visible_at.getTime());
    expect(described.waitingReason).toContain("workflow task attempt 1 failed: its workflow code did not yield");
    expect(described.waitingReason).toContain("longer back-off after a deadlock");

    // The next looping worker takes the task once the back-off ends, and is stopped too.
    const second = await deadlockedAttempt(runId, 2);
    expect(second.backoff_ms).toBeGreaterThanOrEqual(2 * AFTER_DEADLOCK.initialMs);
    expect(second.backoff_ms).toBeLessThanOrEqual(2 * AFTER_DEADLOCK.initialMs + LEASE_MS);

    // Fixed code carries the run on after the back-off.
    h.workflowWorker({ spin: spinFixed });
    expect(await run.result()).toBe("fixed");
  });
});

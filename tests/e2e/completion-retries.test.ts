/**
 * A worker whose completion fails because the server is restarting keeps
 * retrying it for as long as the task's lease lasts, so the work is not done
 * again. Two bugs the chaos suite found:
 * - the workflow worker gave up CompleteWorkflowTask after 5 tries (about
 *   1.5 s), shorter than a server restart, so the task waited out its lease and
 *   ran again (now: retried until WorkflowTask.lease_deadline);
 * - a server shutting down past its grace period cancels the calls it still
 *   serves; the SDK took CANCELLED as final, so the activity ran again after its
 *   lease (now: a CANCELLED the worker did not ask for is retried like
 *   UNAVAILABLE).
 */
import postgres from "postgres";
import { afterEach, describe, expect, it } from "vitest";
import { createActivityWorker, createClient, createWorkflowWorker, type WorkflowContext } from "@dex/sdk";
import { startServer } from "@dex/server";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { DEFAULT_QUEUES, deferred, quietLogger, startHarness } from "../support/harness.js";
import { startTcpGate, type TcpGate } from "../support/tcp-gate.js";

/** How long the server stays unreachable: longer than the old 5 tries, shorter than the 10 s lease. */
const OUTAGE_MS = 3_000;

let cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const step of cleanup.reverse()) await step();
  cleanup = [];
});

describe("completions through a server outage", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  it("a workflow task completed while the server is unreachable is retried until it lands, not run again", async () => {
    const h = await startHarness();
    const gate = await startTcpGate(h.server.address);
    cleanup.push(() => h.close(), () => gate.close());

    const cut = deferred();
    let cutOff = false;
    // Workflow code runs in this process: its first activation cuts the worker off, so the
    // completion that follows meets an unreachable server.
    async function cutOffOnce(_ctx: WorkflowContext) {
      if (!cutOff) {
        cutOff = true;
        gate.shut();
        cut.resolve();
      }
      return "done";
    }
    const worker = createWorkflowWorker({ address: gate.address, taskQueue: "default", workflows: { cutOffOnce }, logger: quietLogger });
    worker.start();
    cleanup.push(() => worker.shutdown());

    const handle = await h.client.start(cutOffOnce, { instanceId: `outage-wf-${process.pid}` });
    await cut.promise;
    // The injected fault: the server stays unreachable for OUTAGE_MS.
    setTimeout(() => gate.open(), OUTAGE_MS);
    expect(await handle.result()).toBe("done");
    expect(gate.refused).toBeGreaterThan(0); // the worker did meet the outage

    const completed = (await handle.history()).filter((e) => e.attributes.case === "workflowTaskCompleted");
    expect(completed.map((e) => (e.attributes.value as { attempt: number }).attempt)).toEqual([1]);
  });

  it("an activity completion cut off by a server's forced shutdown is retried on the next server", async () => {
    const h = await startHarness({ shutdownGraceMs: 300 });
    const gate = await startTcpGate(h.server.address);
    cleanup.push(() => h.close(), () => gate.close());

    const executions: number[] = [];
    const started = deferred();
    const release = deferred();
    const activities = {
      async once(_: undefined, ctx: { info: { attempt: number } }) {
        executions.push(ctx.info.attempt);
        started.resolve();
        await release.promise;
        return "ok";
      },
    };
    async function oneActivity(ctx: WorkflowContext) {
      const { once } = ctx.activities<typeof activities>({ startToCloseTimeout: "20s" });
      return once(undefined);
    }
    // Both workers reach the servers through the gate, so they follow it to the second server.
    const workflowWorker = createWorkflowWorker({ address: gate.address, taskQueue: "default", workflows: { oneActivity }, logger: quietLogger });
    const activityWorker = createActivityWorker({ address: gate.address, taskQueue: "default", activities, logger: quietLogger });
    workflowWorker.start();
    activityWorker.start();
    cleanup.push(() => workflowWorker.shutdown(), () => activityWorker.shutdown());

    const client = createClient({ address: gate.address });
    cleanup.push(async () => client.close());
    const handle = await client.start(oneActivity, { instanceId: `outage-act-${process.pid}` });
    await started.promise;
    // Hold the activity's task row so its completion blocks inside the first server.
    const sql = postgres(h.db.url, { max: 2, onnotice: () => {} });
    cleanup.push(() => sql.end());
    const blocker = await sql.reserve();
    await blocker`begin`;
    await blocker`select 1 from dex.activity_tasks where run_id = ${handle.runId!} for update`;
    release.resolve();
    await waitFor(
      async () =>
        (await sql`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`).length > 0,
      { message: "the completion never reached the locked row" },
    );

    // A second server on the same database takes the new connections; the first shuts down with
    // the completion still in flight, cuts it off after its grace (CANCELLED), and its pool's end
    // kills the blocked statement's session, so nothing of it commits.
    const next = await startServer({ databaseUrl: h.db.url, port: 0, ensureQueues: DEFAULT_QUEUES, logger: quietLogger });
    cleanup.push(() => next.close());
    gate.open(next.address);
    await h.server.close();
    await blocker`rollback`;
    blocker.release();

    expect(await handle.result()).toBe("ok");
    expect(executions).toEqual([1]);
    const outcomes = (await handle.history()).filter((e) => e.attributes.case === "activityCompleted");
    expect(outcomes).toHaveLength(1);
  });
});

/** The database going away briefly: the server answers UNAVAILABLE, does not crash, and recovers. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DexError } from "@dex/proto";
import { waitFor } from "@dex/testing";
import { byRunId, completeRun, pollWorkflowTaskOf, startHarness, uniqueId, type Harness } from "./helpers.js";

describe("database outage", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("survives its connections being killed, including the LISTEN connection", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("out") });
    const killed = await h.sql<{ n: number }[]>`
      select count(pg_terminate_backend(pid))::int as n from pg_stat_activity
      where datname = current_database() and application_name like 'dex-server%'`;
    expect(killed[0]!.n).toBeGreaterThan(0);
    // Calls either succeed on a fresh connection or answer UNAVAILABLE; never INTERNAL, never a crash.
    const codes = new Set<string>();
    await waitFor(async () => {
      try {
        await h.client.describeRun({ run: byRunId(runId) });
        return true;
      } catch (err) {
        codes.add(err instanceof DexError ? err.code : String(err));
        return false;
      }
    });
    for (const code of codes) expect(code).toBe("UNAVAILABLE");
    // The whole path still works, and parked polls are still woken (LISTEN reconnected).
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [completeRun("after")] });
    expect((await h.client.getRunResult({ run: byRunId(runId) })).result).toBeDefined();
  });
});

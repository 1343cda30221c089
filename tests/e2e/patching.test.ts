/**
 * Changing a deployed workflow, end to end (issue 13): a real server, the
 * versioning example's worker as a separate process running the compiled
 * code, and a deploy = stopping that process and starting the next version.
 * 50 runs started on version 1 sleep on a timer while version 2 (`ctx.patched`)
 * is deployed: they finish on the old path, new runs take the new path; then
 * version 3 (`deprecatePatch`) and version 4 (call removed) each carry on the
 * runs the previous version left asleep and replay every recorded history they
 * must. Timers are made due by moving their fire time (as server/test/timers
 * does), so the test waits for states, not for an hour.
 * With DEX_RECORD_HISTORIES=1 it (re)writes examples/versioning/histories,
 * which examples/test/versioning-replay.test.ts replays in CI.
 */
import { writeFile } from "node:fs/promises";
import { toJson } from "@bufbuild/protobuf";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HistoryEventSchema, type HistoryEvent } from "@dex/proto";
import { NonDeterminismError, replayHistory, type WorkflowHandle } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import type { OrderInput, OrderResult } from "../../examples/versioning/types.js";
import { versions, type VersionName } from "../../examples/versioning/versions.js";
import { startHarness, type Harness } from "../support/harness.js";
import { repoRoot, runDex } from "../support/server-process.js";
import { startProcess, stopProcess, type Started } from "../support/spawned.js";

const record = process.env.DEX_RECORD_HISTORIES === "1";
const OLD_RUNS = 50;

type Handle = WorkflowHandle<OrderResult>;

describe("changing a deployed workflow: patch, deprecate, remove", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  let sql: postgres.Sql;
  let worker: Started | undefined;
  const histories = new Map<string, HistoryEvent[]>();

  /** A deploy: the running worker process stops (SIGTERM, graceful), the next version's starts. */
  async function deploy(version: VersionName): Promise<void> {
    await stopProcess(worker);
    worker = await startProcess([`${repoRoot}examples/dist/versioning/worker.js`, version], /polling/, {
      env: { DEX_ADDRESS: h.server.address },
    });
  }

  async function startOrders(prefix: string, count: number): Promise<Handle[]> {
    return Promise.all(
      Array.from({ length: count }, (_, i) => {
        const input: OrderInput = { orderId: `${prefix}-${i}`, pickupDelay: "1h" };
        return h.client.start<typeof versions.v1.fulfilOrder>("fulfilOrder", { instanceId: `${prefix}-${i}`, input });
      }),
    );
  }

  const runIds = (handles: Handle[]) => handles.map((handle) => handle.runId!);

  /** Waits until every run sleeps on its pickup timer. */
  async function asleep(handles: Handle[], what: string): Promise<void> {
    await waitFor(
      async () => {
        const [row] = await sql<{ n: number }[]>`select count(*)::int as n from dex.timers where run_id = any(${runIds(handles)}::uuid[])`;
        return row!.n === handles.length;
      },
      { message: `${handles.length} ${what} runs to sleep on their pickup timer` },
    );
  }

  /** The pickup is due now: the server's timer loop fires the timers as it would an hour later. */
  async function pickUp(handles: Handle[]): Promise<void> {
    await sql`update dex.timers set fire_at = now() where run_id = any(${runIds(handles)}::uuid[])`;
  }

  async function finish(handles: Handle[]): Promise<OrderResult[]> {
    const results = await Promise.all(handles.map((handle) => handle.result()));
    for (const handle of handles) histories.set(handle.instanceId!, await handle.history());
    return results;
  }

  const markers = (instanceId: string) =>
    histories.get(instanceId)!.flatMap((e) => (e.attributes.case === "patchMarkerRecorded" ? [e.attributes.value] : []));
  const activityNames = (instanceId: string) =>
    histories.get(instanceId)!.flatMap((e) => (e.attributes.case === "activityScheduled" ? [e.attributes.value.activityName] : []));

  beforeAll(async () => {
    h = await startHarness();
    sql = postgres(h.db.url, { max: 2, onnotice: () => {} });
  });
  afterAll(async () => {
    await stopProcess(worker);
    await sql?.end();
    await h?.close();
  });

  let v2Asleep: Handle[] = [];
  let v3Asleep: Handle[] = [];

  it(`finishes ${OLD_RUNS} runs of version 1 on the old path after version 2 is deployed, and new runs take the new path`, async () => {
    await deploy("v1");
    const old = await startOrders("old", OLD_RUNS);
    await asleep(old, "version 1");

    await deploy("v2");
    const fresh = await startOrders("v2", 5);
    v2Asleep = await startOrders("v2-asleep", 5);
    await asleep([...fresh, ...v2Asleep], "version 2");
    await pickUp([...old, ...fresh]);

    const oldResults = await finish(old);
    expect(oldResults.every((r) => r.status === "shipped" && !r.fraudChecked)).toBe(true);
    for (const handle of old) {
      expect(markers(handle.instanceId!)).toEqual([]);
      expect(activityNames(handle.instanceId!)).toEqual(["reserveStock", "shipOrder"]);
    }
    const freshResults = await finish(fresh);
    expect(freshResults.every((r) => r.fraudChecked)).toBe(true);
    for (const handle of fresh) {
      expect(markers(handle.instanceId!)).toEqual([expect.objectContaining({ patchId: "fraud-check", deprecated: false })]);
      expect(activityNames(handle.instanceId!)).toEqual(["reserveStock", "checkFraud", "shipOrder"]);
    }
  });

  it("shows the marker in `dex workflow history`", async () => {
    const shown = await runDex(["workflow", "history", "v2-0", "--address", h.server.address]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/patch marker\s+fraud-check\s*$/m);
    const oldPath = await runDex(["workflow", "history", "old-0", "--address", h.server.address]);
    expect(oldPath.stdout).not.toContain("patch marker");
  });

  it("version 3 (deprecatePatch) carries on the runs version 2 left asleep, and records a deprecated marker on new runs", async () => {
    await deploy("v3");
    const fresh = await startOrders("v3", 5);
    v3Asleep = await startOrders("v3-asleep", 5);
    await asleep([...fresh, ...v3Asleep], "version 3");
    await pickUp([...v2Asleep, ...fresh]);
    expect((await finish(v2Asleep)).every((r) => r.fraudChecked)).toBe(true);
    expect((await finish(fresh)).every((r) => r.fraudChecked)).toBe(true);
    for (const handle of v2Asleep) expect(markers(handle.instanceId!)).toEqual([expect.objectContaining({ deprecated: false })]);
    for (const handle of fresh) expect(markers(handle.instanceId!)).toEqual([expect.objectContaining({ patchId: "fraud-check", deprecated: true })]);
  });

  it("version 4 (call removed) carries on the runs version 3 left asleep, and records no marker", async () => {
    await deploy("v4");
    const fresh = await startOrders("v4", 5);
    await asleep(fresh, "version 4");
    await pickUp([...v3Asleep, ...fresh]);
    expect((await finish(v3Asleep)).every((r) => r.fraudChecked)).toBe(true);
    expect((await finish(fresh)).every((r) => r.fraudChecked)).toBe(true);
    for (const handle of fresh) {
      expect(markers(handle.instanceId!)).toEqual([]);
      expect(activityNames(handle.instanceId!)).toEqual(["reserveStock", "checkFraud", "shipOrder"]);
    }
  });

  it("each version replays exactly the recorded histories it must", async () => {
    // Which versions replay the runs each version started (old: started on v1, finished on v2).
    const expected: Record<string, VersionName[]> = {
      "old-": ["v1", "v2"],
      "v2-": ["v2", "v3", "v4"],
      "v3-": ["v2", "v3", "v4"],
      "v4-": ["v3", "v4"],
    };
    expect(histories.size).toBe(OLD_RUNS + 25);
    for (const [instanceId, events] of histories) {
      const prefix = Object.keys(expected).find((p) => instanceId.startsWith(p))!;
      for (const version of Object.keys(versions) as VersionName[]) {
        const outcome = await replayHistory(versions[version], events).then(
          () => "replays",
          (err: unknown) => (err instanceof NonDeterminismError ? "diverges" : `throws ${String(err)}`),
        );
        expect(`${instanceId} on ${version}: ${outcome}`).toBe(`${instanceId} on ${version}: ${expected[prefix]!.includes(version) ? "replays" : "diverges"}`);
      }
    }
    if (record) {
      const save = async (file: string, instanceId: string) => {
        const { runId } = await h.client.getHandle({ instanceId }).describe();
        const events = histories.get(instanceId)!.map((event) => toJson(HistoryEventSchema, event));
        await writeFile(`${repoRoot}examples/versioning/histories/${file}.json`, `${JSON.stringify({ runId, events }, null, 2)}\n`);
      };
      await save("v1-old-path", "old-0");
      await save("v2-patched", "v2-0");
      await save("v2-patched-finished-on-v3", "v2-asleep-0");
      await save("v3-deprecated", "v3-0");
      await save("v3-deprecated-finished-on-v4", "v3-asleep-0");
      await save("v4-removed", "v4-0");
    }
  });
});

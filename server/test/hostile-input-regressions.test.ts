/**
 * Regression tests for the defects server/test/hostile-input.test.ts found:
 * each answered INTERNAL (or spun a timer) before its fix.
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { ClientService, DexError, WorkerService } from "@dex/proto";
import { Wakeups } from "../src/engine/wakeups.js";
import { nested } from "./hostile-input-values.js";
import { byRunId, pollActivityOf, pollWorkflowTaskOf, rejectsWith, scheduleActivity, startHarness, uniqueId, type Harness } from "./helpers.js";

describe("defects found by the hostile-input test", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  function callRaw(service: typeof ClientService | typeof WorkerService, method: string, bytes: number[]): Promise<unknown> {
    return new Promise((resolve, reject) =>
      h.channel.makeUnaryRequest(
        `/${service.typeName}/${method}`,
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(bytes),
        new grpc.Metadata(),
        {},
        (err, res) => (err ? reject(DexError.from(err)) : resolve(res)),
      ),
    );
  }

  it("a request that does not decode is INVALID_ARGUMENT naming the message type, not INTERNAL", async () => {
    // StartWorkflowRequest.workflow_name (field 1) announced 127 bytes long, 1 sent.
    await rejectsWith(callRaw(ClientService, "StartWorkflow", [0x0a, 0x7f, 0x01]), "INVALID_ARGUMENT", /not a valid dex\.v1\.StartWorkflowRequest message/);
    await rejectsWith(callRaw(WorkerService, "PollWorkflowTasks", [0x0f, 0x00]), "INVALID_ARGUMENT", /dex\.v1\.PollWorkflowTasksRequest/);
  });

  it("a failure nested past the decoder's depth limit, or past 32 causes, is INVALID_ARGUMENT", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("deep") });
    const task = await pollWorkflowTaskOf(h, runId);
    await rejectsWith(h.worker.failWorkflowTask({ taskToken: task.taskToken, failure: nested(150) as never }), "INVALID_ARGUMENT", /maximum recursion depth/);
    await rejectsWith(
      h.worker.failWorkflowTask({ taskToken: task.taskToken, failure: nested(40) as never }),
      "INVALID_ARGUMENT",
      /failure has a cause chain more than 32 failures deep/,
    );
    await h.worker.failWorkflowTask({ taskToken: task.taskToken, failure: nested(20) as never });
  });

  it("a token with a lock version or seq beyond 32 bits is INVALID_ARGUMENT, not a database error", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("tok") });
    const task = await pollWorkflowTaskOf(h, runId);
    const workflowToken = Uint8Array.from(task.taskToken).fill(0xff, 34, 38);
    await rejectsWith(h.worker.completeWorkflowTask({ taskToken: workflowToken }), "INVALID_ARGUMENT", /lock version out of range/);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(1, "a")] });
    const activity = await pollActivityOf(h, runId, 1);
    const seqToken = Uint8Array.from(activity.taskToken).fill(0xff, 38, 42);
    await rejectsWith(h.worker.heartbeatActivityTask({ taskToken: seqToken }), "INVALID_ARGUMENT", /seq out of range/);
    const lockToken = Uint8Array.from(activity.taskToken).fill(0xff, 34, 38);
    await rejectsWith(h.worker.completeActivityTask({ taskToken: lockToken }), "INVALID_ARGUMENT", /lock version out of range/);
    await h.worker.completeActivityTask({ taskToken: activity.taskToken });
  });

  it("a retry delay past 2^31 ms (the ten years next_retry_delay allows) is written, not an INTERNAL overflow", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("delay") });
    const task = await pollWorkflowTaskOf(h, runId);
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(1, "a")] });
    const activity = await pollActivityOf(h, runId, 1);
    const tenYears = { seconds: 10n * 365n * 86_400n, nanos: 0 };
    await h.worker.failActivityTask({ taskToken: activity.taskToken, failure: { message: "later" }, nextRetryDelay: tenYears });
    const [row] = await h.sql<{ years: number }[]>`
      select extract(epoch from visible_at - now()) / (365 * 86400) as years from dex.activity_tasks where run_id = ${runId}::uuid`;
    expect(Number(row!.years)).toBeGreaterThan(9.9);
  });

  it("a command seq beyond 32 bits is INVALID_ARGUMENT, not a failed insert", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("seq") });
    const task = await pollWorkflowTaskOf(h, runId);
    for (const seq of [2 ** 31, 2 ** 32 - 1]) {
      await rejectsWith(
        h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(seq, "a")] }),
        "INVALID_ARGUMENT",
        new RegExp(`commands\\[0\\]\\.schedule_activity\\.seq must be from 1 to 2147483647, got ${seq}`),
      );
    }
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(2 ** 31 - 1, "a")] });
  });

  it("GetRunHistory after a sequence beyond 32 bits answers an empty page", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("hist") });
    for (const afterSequence of [2n ** 31n, 2n ** 63n - 1n]) {
      const page = await h.client.getRunHistory({ run: byRunId(runId), afterSequence });
      expect(page.events).toEqual([]);
      expect(page.historyLength).toBe(1n);
    }
  });

  it("a timestamp outside years 1 to 9999 is INVALID_ARGUMENT, not a database error", async () => {
    for (const seconds of [8_640_000_000_000n, -8_640_000_000_000n, 253_402_300_800n]) {
      await rejectsWith(h.client.listRuns({ createdAfter: { seconds } }), "INVALID_ARGUMENT", /created_after is not a valid timestamp/);
    }
    await h.client.listRuns({ createdAfter: { seconds: 253_402_300_799n }, createdBefore: { seconds: -62_135_596_800n } });
  });
});

describe("Wakeups.wakeQueueAt", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("never asks setTimeout for more than it can wait (a longer delay fires at once, and re-arming spun)", () => {
    const delays: number[] = [];
    const real = globalThis.setTimeout;
    vi.spyOn(globalThis, "setTimeout").mockImplementation(((fn: () => void, ms?: number) => {
      delays.push(ms ?? 0);
      return real(fn, 0x7fffffff);
    }) as typeof setTimeout);
    const wakeups = new Wakeups();
    // A FailActivityTask may ask for a retry ten years out.
    wakeups.wakeQueueAt("activity", "q", new Date(Date.now() + 10 * 365 * 24 * 3600_000));
    wakeups.close();
    expect(delays.length).toBeGreaterThan(0);
    for (const ms of delays) expect(ms).toBeLessThanOrEqual(2 ** 31 - 1);
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2E_TEST_TIMEOUT_MS } from "@dex/testing";
import { create } from "@bufbuild/protobuf";
import { CommandSchema, DexError, PayloadSchema } from "@dex/proto";
import { startHarness, type Harness } from "../support/harness.js";

const json = (value: unknown) =>
  create(PayloadSchema, { encoding: "json/plain", data: new TextEncoder().encode(JSON.stringify(value)) });

async function rejection(promise: Promise<unknown>): Promise<DexError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(DexError);
  return err as DexError;
}

describe("task tokens fence completions", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("rejects a duplicate, stale or forged completion and leaves history unchanged", async () => {
    const { client, worker } = h.client.raw;
    const { runId } = await client.startWorkflow({ workflowName: "manual", instanceId: "fence-1", input: json(1) });

    const [wfTask] = (await worker.pollWorkflowTasks({ taskQueue: "default", workerId: "test-worker", maxTasks: 1 })).tasks;
    expect(wfTask?.runId).toBe(runId);
    await worker.completeWorkflowTask({
      taskToken: wfTask!.taskToken,
      commands: [
        create(CommandSchema, {
          command: { case: "scheduleActivity", value: { seq: 1, activityName: "charge", input: json({ cents: 100 }) } },
        }),
      ],
    });
    // The workflow task's token is spent.
    expect((await rejection(worker.completeWorkflowTask({ taskToken: wfTask!.taskToken, commands: [] }))).code).toBe("NOT_FOUND");

    const [actTask] = (await worker.pollActivityTasks({ taskQueue: "default", workerId: "test-worker", maxTasks: 1 })).tasks;
    expect(actTask?.activityName).toBe("charge");
    await worker.completeActivityTask({ taskToken: actTask!.taskToken, result: json("first") });
    const historyAfterFirst = (await client.getRunHistory({ run: { target: { case: "runId", value: runId } } })).events;

    // Duplicate completion with the same token: rejected, nothing recorded.
    const duplicate = await rejection(worker.completeActivityTask({ taskToken: actTask!.taskToken, result: json("second") }));
    expect(duplicate.code).toBe("NOT_FOUND");
    // A failure or heartbeat with the spent token: rejected too.
    expect((await rejection(worker.failActivityTask({ taskToken: actTask!.taskToken, failure: { message: "late" } }))).code).toBe("NOT_FOUND");
    expect((await rejection(worker.heartbeatActivityTask({ taskToken: actTask!.taskToken }))).code).toBe("NOT_FOUND");
    // Forged tokens: garbage is INVALID_ARGUMENT; a well-formed token with a flipped byte is NOT_FOUND or INVALID_ARGUMENT.
    expect((await rejection(worker.completeActivityTask({ taskToken: new Uint8Array([1, 2, 3]), result: json("x") }))).code).toBe("INVALID_ARGUMENT");
    const tampered = Uint8Array.from(actTask!.taskToken);
    const last = tampered.length - 1;
    tampered[last] = tampered[last]! ^ 0xff;
    expect(["NOT_FOUND", "INVALID_ARGUMENT"]).toContain((await rejection(worker.completeActivityTask({ taskToken: tampered, result: json("x") }))).code);
    expect((await rejection(worker.completeActivityTask({ taskToken: new Uint8Array(), result: json("x") }))).code).toBe("INVALID_ARGUMENT");

    const historyNow = (await client.getRunHistory({ run: { target: { case: "runId", value: runId } } })).events;
    expect(historyNow).toEqual(historyAfterFirst);

    // The one result reaches the workflow exactly once.
    const [next] = (await worker.pollWorkflowTasks({ taskQueue: "default", workerId: "test-worker", maxTasks: 1 })).tasks;
    const results = next!.newEvents.filter((e) => e.attributes.case === "activityCompleted");
    expect(results).toHaveLength(1);
    expect(new TextDecoder().decode((results[0]!.attributes.value as { result: { data: Uint8Array } }).result.data)).toBe('"first"');
  });
});

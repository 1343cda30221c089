/**
 * Limits (engine/limits.ts, docs/worker-protocol.md "Limits"): what is
 * refused, what the message says, and that a refusal writes nothing. The
 * history limit refuses growth but never the end of a run.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "@dex/proto";
import { DEFAULT_LIMITS, resolveLimits } from "../src/engine/limits.js";
import {
  byRunId,
  completeRun,
  json,
  pollActivityOf,
  pollWorkflowTaskOf,
  rejectsWith,
  scheduleActivity,
  startHarness,
  startWith,
  uniqueId,
  type Harness,
} from "./helpers.js";

const LIMIT = 4096;
const HISTORY_LIMIT = 10;
const bytes = (n: number) => ({ data: new Uint8Array(n), encoding: "binary/plain" });
const sideEffect = (seq: number) => ({ command: { case: "recordSideEffect" as const, value: { seq, value: json(seq) } } });

async function rowCounts(h: Harness): Promise<Record<string, number>> {
  const [row] = await h.sql<Record<string, number>[]>`
    select (select count(*)::int from dex.runs) as runs, (select count(*)::int from dex.history_events) as history,
           (select count(*)::int from dex.inbox) as inbox, (select count(*)::int from dex.activity_tasks) as activities,
           (select count(*)::int from dex.workflow_tasks) as workflow_tasks`;
  return row!;
}

describe("limits", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      limits: { maxPayloadBytes: LIMIT, maxHistoryEvents: HISTORY_LIMIT },
      workflowTaskRetry: { initialMs: 10, maxMs: 10 },
    });
  });
  afterAll(async () => {
    await h.close();
  });

  it("has documented defaults and refuses nonsense at start", async () => {
    expect(DEFAULT_LIMITS).toEqual({ maxPayloadBytes: 2 * 1024 * 1024, maxHistoryEvents: 50_000 });
    expect(resolveLimits({ maxPayloadBytes: undefined })).toEqual(DEFAULT_LIMITS);
    expect(() => resolveLimits({ maxPayloadBytes: 0 })).toThrow(/limits.maxPayloadBytes must be an integer from 1024/);
    expect(() => resolveLimits({ maxHistoryEvents: 1.5 })).toThrow(/limits.maxHistoryEvents/);
  });

  it("refuses a payload over the limit, naming the field, its size and the limit, and writes nothing", async () => {
    const before = await rowCounts(h);
    const over = bytes(LIMIT + 1);
    const message = new RegExp(`input is ${LIMIT + 13} bytes, more than the limit of ${LIMIT} bytes \\(4 KiB\\) per payload`);
    await rejectsWith(h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("big"), input: over }), "INVALID_ARGUMENT", message);
    await rejectsWith(
      h.client.sendEventWithStart({ start: { workflowName: "wf", instanceId: uniqueId("big"), input: over }, eventId: "e" }),
      "INVALID_ARGUMENT",
      /start\.input is \d+ bytes/,
    );
    // Metadata counts: it is stored with the data.
    const metadata = { data: new Uint8Array(1), metadata: { k: "m".repeat(LIMIT) } };
    await rejectsWith(h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("big"), input: metadata }), "INVALID_ARGUMENT", /input is 4098 bytes/);
    expect(await rowCounts(h)).toEqual(before);
    // At the limit exactly: accepted (data + "binary/plain").
    await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("at"), input: bytes(LIMIT - 12) });
  });

  it("checks every payload a command carries before the completion writes anything", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("cmd") });
    const task = await pollWorkflowTaskOf(h, runId);
    const over = bytes(LIMIT + 1);
    const before = await rowCounts(h);
    const cases: Array<[unknown, RegExp]> = [
      [scheduleActivity(1, "a", { input: over }), /commands\[0\]\.schedule_activity\.input is 4109 bytes/],
      [{ command: { case: "recordSideEffect", value: { seq: 1, value: over } } }, /commands\[0\]\.record_side_effect\.value/],
      [{ command: { case: "startChildRun", value: { seq: 1, workflowName: "c", instanceId: uniqueId("c"), input: over } } }, /start_child_run\.input/],
      [{ command: { case: "completeRun", value: { result: over } } }, /commands\[0\]\.complete_run\.result is/],
      [{ command: { case: "cancelRun", value: { details: over } } }, /cancel_run\.details/],
      [{ command: { case: "continueAsNew", value: { input: over } } }, /continue_as_new\.input/],
      [{ command: { case: "failRun", value: { failure: { message: "x", details: over } } } }, /fail_run\.failure\.details is/],
      [{ command: { case: "failRun", value: { failure: { message: "m".repeat(LIMIT) } } } }, /fail_run\.failure is \d+ bytes serialized/],
    ];
    for (const [command, message] of cases) {
      await rejectsWith(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [command as never] }), "INVALID_ARGUMENT", message);
    }
    expect(await rowCounts(h)).toEqual(before);
    // The task was untouched by the refusals: it completes now.
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(1, "a")] });

    const activity = await pollActivityOf(h, runId, 1);
    const afterSchedule = await rowCounts(h);
    await rejectsWith(h.worker.completeActivityTask({ taskToken: activity.taskToken, result: over }), "INVALID_ARGUMENT", /^result is 4109 bytes/);
    await rejectsWith(h.worker.heartbeatActivityTask({ taskToken: activity.taskToken, details: over }), "INVALID_ARGUMENT", /^details is/);
    await rejectsWith(
      h.worker.failActivityTask({ taskToken: activity.taskToken, failure: { message: "x", cause: { message: "y", details: over } } }),
      "INVALID_ARGUMENT",
      /^failure\.cause\.details is/,
    );
    await rejectsWith(h.client.sendEvent({ run: byRunId(runId), eventId: "e", payload: over }), "INVALID_ARGUMENT", /^payload is/);
    expect(await rowCounts(h)).toEqual(afterSchedule);
    await h.worker.completeActivityTask({ taskToken: activity.taskToken, result: bytes(100) });
  });

  it("refuses control characters in ids and names, too many labels, and over-long free text", async () => {
    await rejectsWith(h.client.startWorkflow({ workflowName: "wf", instanceId: "a\nb" }), "INVALID_ARGUMENT", /instance_id must not contain control characters: it has U\+000A at position 1/);
    await rejectsWith(h.client.startWorkflow({ workflowName: "w\u001b[0m", instanceId: uniqueId("c") }), "INVALID_ARGUMENT", /workflow_name .*U\+001B/);
    await rejectsWith(h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("c"), labels: { "k\t": "v" } }), "INVALID_ARGUMENT", /labels key "k\\t"/);
    // Free text may hold a newline; a label value too.
    const runId = await startWith(h, [{ command: { case: "setCustomStatus", value: { customStatus: "line 1\nline 2" } } }]);
    await h.client.cancelRun({ run: byRunId(runId), reason: "why:\nbecause" });

    const labels = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`a${i}`, "v"]));
    const { runId: labelled } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("l"), labels });
    const task = await pollWorkflowTaskOf(h, labelled);
    const more = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`b${i}`, "v"]));
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [{ command: { case: "upsertLabels", value: { labels: more } } }] }),
      "INVALID_ARGUMENT",
      /commands\[0\]\.upsert_labels\.labels would give the run 70 labels, at most 64/,
    );
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [{ command: { case: "setCustomStatus", value: { customStatus: "s".repeat(256) } } }] }),
      "INVALID_ARGUMENT",
      /custom_status is too long: 256 characters, at most 255/,
    );
    await rejectsWith(h.client.terminateRun({ run: byRunId(labelled), reason: "r".repeat(1001) }), "INVALID_ARGUMENT", /reason is too long/);
  });

  describe("history events per run", () => {
    /** A run whose first task recorded `n` side effects: history 1 + 1 + n. */
    async function runWithHistory(n: number) {
      const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("hist") });
      const first = await pollWorkflowTaskOf(h, runId);
      await h.worker.completeWorkflowTask({ taskToken: first.taskToken, commands: Array.from({ length: n }, (_, i) => sideEffect(i + 1)) });
      await h.client.sendEvent({ run: byRunId(runId), eventId: uniqueId("e") });
      return { runId, task: await pollWorkflowTaskOf(h, runId) };
    }

    it("refuses a completion that would grow the history past the limit, writing nothing, and says to continue as new", async () => {
      const { runId, task } = await runWithHistory(4); // 6 events, 1 input waiting
      const before = await rowCounts(h);
      const err = await rejectsWith(
        h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [sideEffect(10), sideEffect(11), sideEffect(12)] }),
        "FAILED_PRECONDITION",
        new RegExp(`run ${runId} has 6 history events and this workflow task would take it to 11, past the limit of 10 events per run; nothing was written`),
      );
      expect(err.message).toMatch(/continue-as-new/);
      expect(await rowCounts(h)).toEqual(before);
      // Within the limit, the same task completes: the refusal left it leased to us.
      const done = await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [sideEffect(10)] });
      expect(done.historyLength).toBe(9n);
    });

    it("still lets a run at the limit end: continue-as-new, complete, fail or cancel", async () => {
      const ends: Array<{ command: { case: "continueAsNew" | "completeRun" | "failRun" | "cancelRun"; value: object } }> = [
        { command: { case: "continueAsNew", value: { input: json("next") } } },
        completeRun("done"),
        { command: { case: "failRun", value: { failure: { message: "gave up" } } } },
        { command: { case: "cancelRun", value: {} } },
      ];
      for (const end of ends) {
        const { runId, task } = await runWithHistory(7); // 9 events + the waiting input: any block passes 10
        const refused = await rejectsWith(h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [] }), "FAILED_PRECONDITION", /limit of 10/);
        // What a worker does with a refused completion (the TypeScript SDK does): fail the task; describe shows why.
        const again = await h.worker.failWorkflowTask({ taskToken: task.taskToken, failure: { message: refused.message } });
        expect(again.nextAttemptTime).toBeDefined();
        const described = await h.client.describeRun({ run: byRunId(runId) });
        expect(described.pendingWorkflowTask?.lastFailure?.message).toMatch(/continue-as-new/);

        const retry = await pollWorkflowTaskOf(h, runId);
        const done = await h.worker.completeWorkflowTask({ taskToken: retry.taskToken, commands: [sideEffect(20), end as never] });
        expect(done.historyLength).toBe(13n); // past the limit: ending is always accepted
        const result = await h.client.getRunResult({ run: byRunId(runId) });
        expect(result.status).not.toBe(RunStatus.RUNNING);
        if (end.command.case === "continueAsNew") {
          const next = await h.client.describeRun({ run: byRunId(result.continuedAsRunId) });
          expect(next.info?.historyLength).toBe(1n);
        }
      }
    });
  });
});

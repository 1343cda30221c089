/**
 * Lengths count characters as the proto comments say: Unicode code points,
 * so an emoji (two UTF-16 units in JavaScript) is one, and a limit means the
 * same to a Python, Go or TypeScript client. And a Failure's message and type
 * refuse NUL as every other string does; a refusal writes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codePoints } from "../src/engine/validation.js";
import { byRunId, pollActivityOf, pollWorkflowTaskOf, rejectsWith, scheduleActivity, startHarness, uniqueId, type Harness } from "./helpers.js";

const EMOJI = "😀"; // U+1F600: one code point, two UTF-16 units, four UTF-8 bytes

async function historyLength(h: Harness, runId: string): Promise<number> {
  const [row] = await h.sql<{ n: number }[]>`select count(*)::int as n from dex.history_events where run_id = ${runId}`;
  return row!.n;
}

describe("lengths in code points", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("counts code points, an unpaired surrogate as one", () => {
    expect(codePoints("")).toBe(0);
    expect(codePoints(EMOJI.repeat(3))).toBe(3);
    expect(codePoints(`a${EMOJI}b`)).toBe(3);
    expect(codePoints("\ud83d")).toBe(1);
    expect(codePoints("\ude00\ud83d")).toBe(2);
    expect(codePoints(`\ud83d${EMOJI}`)).toBe(2);
  });

  it("accepts ids, label values and reasons of emoji up to the limit, and refuses one more", async () => {
    const atLimit = EMOJI.repeat(255); // 510 UTF-16 units: refused while the server counted units
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: atLimit, labels: { note: atLimit } });
    const described = await h.client.describeRun({ run: byRunId(runId) });
    expect(described.info?.instanceId).toBe(atLimit);
    expect(described.info?.labels).toEqual({ note: atLimit });
    await rejectsWith(
      h.client.startWorkflow({ workflowName: "wf", instanceId: EMOJI.repeat(256) }),
      "INVALID_ARGUMENT",
      /^instance_id is too long: 256 characters, at most 255$/,
    );
    await rejectsWith(
      h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("l"), labels: { note: `${atLimit}x` } }),
      "INVALID_ARGUMENT",
      /labels\["note"\] is too long: 256 characters, at most 255/,
    );
    await rejectsWith(h.client.terminateRun({ run: byRunId(runId), reason: EMOJI.repeat(1001) }), "INVALID_ARGUMENT", /reason is too long: 1001 characters, at most 1000/);
    await h.client.terminateRun({ run: byRunId(runId), reason: EMOJI.repeat(1000) });
  });

  it("gives a control character's position in characters", async () => {
    await rejectsWith(
      h.client.startWorkflow({ workflowName: "wf", instanceId: `${EMOJI}${EMOJI}\n` }),
      "INVALID_ARGUMENT",
      /instance_id must not contain control characters: it has U\+000A at position 2/,
    );
  });
});

describe("NUL in a failure", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("is refused in a failure's message or type, at any depth, by every call that takes one, and nothing is written", async () => {
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId: uniqueId("nul") });
    const task = await pollWorkflowTaskOf(h, runId);
    const failRun = (failure: object) => [{ command: { case: "failRun" as const, value: { failure } } }];
    await rejectsWith(
      h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: failRun({ message: "bad\u0000input" }) }),
      "INVALID_ARGUMENT",
      /commands\[0\]\.fail_run\.failure\.message must not contain NUL characters/,
    );
    await rejectsWith(
      h.worker.failWorkflowTask({ taskToken: task.taskToken, failure: { message: "ok", type: "Type\u0000" } }),
      "INVALID_ARGUMENT",
      /^failure\.type must not contain NUL characters/,
    );
    const before = await historyLength(h, runId);
    // The task was untouched by the refusals: it completes now.
    await h.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [scheduleActivity(1, "a")] });
    expect(await historyLength(h, runId)).toBeGreaterThan(before);

    const activity = await pollActivityOf(h, runId, 1);
    await rejectsWith(
      h.worker.failActivityTask({ taskToken: activity.taskToken, failure: { message: "outer", cause: { message: "in\u0000ner" } } }),
      "INVALID_ARGUMENT",
      /^failure\.cause\.message must not contain NUL characters/,
    );
    // Still leased to us: the refusal recorded no failed attempt.
    await h.worker.failActivityTask({ taskToken: activity.taskToken, failure: { message: "a real failure, newline\nand all", type: "Oops" } });
  });
});

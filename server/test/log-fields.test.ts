/**
 * Server log lines say which server wrote them (`server`: the origin id, paired with the address in
 * "dex server listening"), and lines about a run carry its run id and workflow name. The JSON
 * logger's real output is captured and parsed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createJsonLogger } from "../src/index.js";
import { byRunId, rejectsWith, scheduleActivity, serveDatabase, startHarness, startWith, type Harness } from "./helpers.js";

type LogLine = Record<string, unknown> & { msg: string; level: string; time: string };

function captureLogs(): { lines: LogLine[]; logger: ReturnType<typeof createJsonLogger> } {
  const lines: LogLine[] = [];
  return { lines, logger: createJsonLogger("debug", (line) => lines.push(JSON.parse(line) as LogLine)) };
}

function only(lines: LogLine[], msg: string, runId: string): LogLine {
  const found = lines.filter((line) => line.msg === msg && line.runId === runId);
  expect(found, `one "${msg}" line for run ${runId}`).toHaveLength(1);
  return found[0]!;
}

describe("server log fields", () => {
  const logs = captureLogs();
  let h: Harness;
  let serverId: string;

  beforeAll(async () => {
    h = await startHarness({ logger: logs.logger });
    const listening = logs.lines.find((line) => line.msg === "dex server listening");
    expect(listening).toMatchObject({ address: h.server.address, server: expect.stringMatching(/^[0-9a-f]{12}$/) });
    serverId = listening!.server as string;
  });
  afterAll(() => h?.close());

  it("lines about a run carry its run id and workflow name", async () => {
    // The activity's queue does not exist: the call fails at once, and the server logs it.
    const runId = await startWith(h, [scheduleActivity(1, "charge", { taskQueue: "no-such-queue" })]);
    expect(only(logs.lines, "run started", runId)).toMatchObject({ level: "debug", workflow: "wf" });
    expect(only(logs.lines, "activity call failed: its task queue does not exist", runId)).toMatchObject({
      level: "warn",
      workflow: "wf",
      seq: 1,
      activity: "charge",
      queue: "no-such-queue",
    });
    await h.client.terminateRun({ run: byRunId(runId), reason: "operator says stop" });
    expect(only(logs.lines, "run terminated", runId)).toMatchObject({ level: "info", workflow: "wf", reason: "operator says stop" });
  });

  it("every line names the server that wrote it, and a second server on the same database has its own id", async () => {
    await rejectsWith(h.client.terminateRun({ run: byRunId("0190a1b2-0000-7000-8000-000000000000") }), "NOT_FOUND");
    expect(logs.lines.length).toBeGreaterThan(3);
    expect(logs.lines.filter((line) => line.server !== serverId)).toEqual([]);

    const second = captureLogs();
    const other = await serveDatabase(h.db, { logger: second.logger });
    try {
      const listening = second.lines.find((line) => line.msg === "dex server listening");
      expect(listening).toMatchObject({ address: other.server.address });
      expect(listening!.server).not.toBe(serverId);
      const runId = await startWith(other, []);
      expect(only(second.lines, "run started", runId).server).toBe(listening!.server);
      expect(logs.lines.filter((line) => line.runId === runId)).toEqual([]);
    } finally {
      await other.close();
    }
  });
});

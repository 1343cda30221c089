/**
 * `dex workflow replay` checks a deploy before it happens: open runs of two
 * versions of a workflow (set up by real worker processes running version 1,
 * then version 2), checked by the compiled `dex` as a process against new code.
 */
import { mkdtemp, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NonDeterminismError, replayHistory, type Workflow } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { startHarness, type Harness } from "../support/harness.js";
import { runDex } from "../support/server-process.js";
import { repoRoot, startProcess, stopProcess } from "../support/spawned.js";

const fixtures = `${repoRoot}tests/e2e/workflow-replay-fixtures/`;
const v2 = `${fixtures}v2.mjs`;

interface Report {
  sdk: string;
  source: string;
  checked: number;
  replays: number;
  fails: number;
  workflows: Array<{
    workflowName: string;
    checked: number;
    replays: number;
    fails: number;
    failures: Array<{ runId: string; source: string; status: string; failure?: { eventSequence?: number; eventKind?: string; recorded?: string; produced?: string; message: string } }>;
  }>;
}

describe("dex workflow replay", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let h: Harness;
  let dir: string;
  const v1Runs: string[] = [];
  const v2Runs: string[] = [];
  let greetingRun: string;

  /** Runs a worker process on `module`, starts runs with `start`, waits until each waits for its event, stops it. */
  async function deploy(module: string, start: () => Promise<string[]>): Promise<string[]> {
    const worker = await startProcess([`${fixtures}worker.mjs`, h.server.address, module], /workers ready/);
    try {
      const runIds = await start();
      for (const runId of runIds) {
        await waitFor(async () => (await h.client.getHandle({ runId }).describe()).pendingEventWaits.length > 0, { message: `run ${runId} to wait for its event` });
      }
      return runIds;
    } finally {
      await stopProcess(worker);
    }
  }

  const startApproval = async (id: string, version: number) =>
    (await h.client.start("approval", { instanceId: id, input: { id, version }, labels: { version: String(version) } })).runId!;

  const replay = (...args: string[]) => runDex(["workflow", "replay", ...args, "--address", h.server.address]);
  const replayJson = async (...args: string[]) => {
    const out = await replay(...args, "--json");
    return { code: out.code, report: JSON.parse(out.stdout) as Report, stderr: out.stderr };
  };

  beforeAll(async () => {
    h = await startHarness();
    dir = await mkdtemp(join(tmpdir(), "dex-replay-"));
    v1Runs.push(
      ...(await deploy(`${fixtures}v1.mjs`, async () => [
        await startApproval("v1-a", 1),
        await startApproval("v1-b", 1),
        await startApproval("v1-c", 1),
        (greetingRun = (await h.client.start("greeting", { instanceId: "greet-1", labels: { version: "1" } })).runId!),
      ])),
    );
    v1Runs.pop(); // the greeting run: the same in both versions
    v2Runs.push(...(await deploy(v2, async () => [await startApproval("v2-a", 2), await startApproval("v2-b", 2)])));
  });

  afterAll(async () => {
    await h?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("names every run the new code would break, with the diverging event, and exits 3", async () => {
    const { workflows } = (await import(v2)) as { workflows: Record<string, Workflow> };
    const expected = await replayHistory(workflows, await h.client.getHandle({ runId: v1Runs[0]! }).history(), { runId: v1Runs[0]! }).catch((e: unknown) => e);
    expect(expected).toBeInstanceOf(NonDeterminismError);
    const { eventSequence, eventKind, recorded, produced } = expected as NonDeterminismError;

    const { code, report } = await replayJson(v2);
    expect(code).toBe(3);
    expect(report).toMatchObject({ source: "server", checked: 6, replays: 3, fails: 3 });
    const approval = report.workflows.find((w) => w.workflowName === "approval")!;
    expect(approval).toMatchObject({ checked: 5, replays: 2, fails: 3 });
    expect(approval.failures.map((f) => f.runId).sort()).toEqual([...v1Runs].sort());
    for (const f of approval.failures) {
      expect(f.status).toBe("non-determinism");
      expect(f.failure).toMatchObject({ eventSequence, eventKind, recorded, produced });
    }
    expect(recorded).toContain('"approved"');
    expect(produced).toContain('"check"');
    expect(report.workflows.find((w) => w.workflowName === "greeting")).toMatchObject({ checked: 1, replays: 1, fails: 0 });

    const text = await replay(v2);
    expect(text.code).toBe(3);
    expect(text.stdout).toMatch(/WORKFLOW\s+CHECKED\s+REPLAY\s+WOULD FAIL/);
    expect(text.stdout).toMatch(/approval\s+5\s+2\s+3/);
    for (const runId of v1Runs) expect(text.stdout).toContain(`run ${runId}`);
    for (const runId of v2Runs) expect(text.stdout).not.toContain(runId);
    expect(text.stdout).toContain(`diverges at history event ${eventSequence} (${eventKind})`);
    expect(text.stdout).toContain(`recorded: ${recorded}`);
    expect(text.stdout).toContain(`produced: ${produced}`);
    expect(text.stdout).toContain("3 of 6 run(s) would fail with this code");
  });

  it("exits 0 when the new code replays every open run", async () => {
    const out = await replay(`${fixtures}compatible.mjs`);
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/approval\s+5\s+5\s+0/);
    expect(out.stdout).toContain("all 6 run(s) replay with this code");
  });

  it("checks only the runs the filters select", async () => {
    expect(await replayJson(v2, "--label", "version=2")).toMatchObject({ code: 0, report: { checked: 2, replays: 2 } });
    expect(await replayJson(v2, "--workflow", "greeting")).toMatchObject({ code: 0, report: { checked: 1, replays: 1 } });
    expect(await replayJson(v2, "--id", "v1-b")).toMatchObject({ code: 3, report: { checked: 1, fails: 1 } });
    expect(await replayJson(v2, "--queue", "default", "--label", "version=1")).toMatchObject({ code: 3, report: { checked: 4, fails: 3 } });
    expect(await replayJson(v2, "--queue", "elsewhere")).toMatchObject({ code: 0, report: { checked: 0 } });
    expect(await replayJson(v2, "--status", "completed")).toMatchObject({ code: 0, report: { checked: 0 } });
  });

  it("counts runs of a workflow the module lacks as failing: unknown workflow", async () => {
    const { code, report } = await replayJson(`${fixtures}without-greeting.mjs`);
    expect(code).toBe(3);
    expect(report).toMatchObject({ checked: 6, replays: 5, fails: 1 });
    const greeting = report.workflows.find((w) => w.workflowName === "greeting")!;
    expect(greeting.failures).toMatchObject([{ runId: greetingRun, status: "unknown-workflow" }]);
    const text = await replay(`${fixtures}without-greeting.mjs`);
    expect(text.stdout).toMatch(/unknown workflow "greeting": the module registers no workflow of that name \(it registers: approval\)/);
    expect(text.stdout).toContain("(unknown workflow): counted as failing");
  });

  it("checks exported history files without a server", async () => {
    for (const [name, runId] of [["v1", v1Runs[0]!], ["v2", v2Runs[0]!]] as const) {
      const exported = await runDex(["workflow", "history", runId, "--json", "--address", h.server.address]);
      expect(exported.code).toBe(0);
      await writeFile(join(dir, `${name}.json`), exported.stdout);
    }
    // No --address: nothing is asked of a server.
    const files = await runDex(["workflow", "replay", v2, "--history", dir, "--json"]);
    expect(files.code).toBe(3);
    const report = JSON.parse(files.stdout) as Report;
    expect(report).toMatchObject({ source: "files", checked: 2, replays: 1, fails: 1 });
    expect(report.workflows[0]!.failures).toMatchObject([{ runId: v1Runs[0], source: join(dir, "v1.json"), status: "non-determinism" }]);
    const good = await runDex(["workflow", "replay", v2, "--history", join(dir, "v2.json")]);
    expect(good.code).toBe(0);
    expect(good.stdout).toContain("all 1 run(s) replay with this code");
  });

  it("replays with the @dex/sdk the module imports, else with its own", async () => {
    const { report } = await replayJson(v2, "--history", join(dir, "v2.json"));
    expect(report.sdk).toBe(await realpath(`${repoRoot}sdk-ts`));
    // A module outside any package that imports nothing: no @dex/sdk resolves from its directory.
    const standalone = join(dir, "standalone.mjs");
    await writeFile(standalone, await readFile(`${fixtures}compatible.mjs`, "utf8"));
    const own = await replayJson(standalone, "--history", dir);
    expect(own).toMatchObject({ code: 0, report: { sdk: "the dex CLI's own", checked: 2, replays: 2 } });
  });

  it("says in one line when the module or a history file cannot be read", async () => {
    for (const args of [
      ["workflow", "replay", `${fixtures}no-such-module.mjs`],
      ["workflow", "replay", `${fixtures}v1.mjs`, "--export", "nothing", "--history", join(dir, "v2.json")],
      ["workflow", "replay", v2, "--history", join(dir, "missing.json")],
    ]) {
      const out = await runDex(args);
      expect(out.code).toBe(1);
      const lines = out.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^dex: (cannot load workflow module .*no such file|workflow module .* has no export named "nothing"|history file .*missing\.json: no such file)/);
      expect(out.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("documents its exit codes in --help", async () => {
    const help = await runDex(["workflow", "replay", "--help"]);
    expect(help.code).toBe(0);
    for (const line of [/0\s+every run checked replays/, /1\s+the command failed/, /3\s+at least one run would fail/]) expect(help.stdout).toMatch(line);
  });
});

/**
 * `dex workflow replay`: checks a deploy before it happens. A thin layer over
 * the SDK's replayRuns / replayHistoryFiles (run with the SDK the user's module
 * imports: replay-module.ts), printing a table per workflow and each failing run.
 */
import type { Command } from "commander";
import { RunStatus } from "@dex/proto";
import type { ReplayCheck, ReplaySummary, RunReplayResult, RunStatusName } from "@dex/sdk";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { UsageError } from "../errors.js";
import { collectLabel, parseIntFlag } from "../options.js";
import { printJson, printTable } from "../output.js";
import { parseStatus } from "../payloads.js";
import { loadSdkFor, loadWorkflowModule } from "./replay-module.js";

/** Exit codes, as `dex workflow result` keeps 1 for "the command itself failed" and leaves 2 out. */
export const REPLAY_EXIT = { ALL_REPLAY: 0, SOME_FAIL: 3 } as const;

const REPLAY_HELP = `
Loads <module> (compiled JavaScript exporting your workflows as given to createWorkflowWorker: an
export named \`workflows\`, the default export, or named functions; --export picks another), then
replays against it the history of every open run on the server (CREATED or RUNNING; narrow with
--workflow, --queue, --label, --status, --id), or the history files given with --history (the output of
\`dex workflow history <run> --json\`; no server needed, for CI). Replay runs in this process with
the @dex/sdk your module imports.

A run "would fail" when the new code issues different commands than its history recorded
(non-determinism: the first diverging event is shown with the recorded and the produced command),
when the module has no workflow of the run's name (unknown workflow: after the deploy no worker
could carry the run on), or when replay fails otherwise (e.g. setTimeout in workflow code).

Exit codes:
  0  every run checked replays (also when no run matched)
  1  the command failed: the module cannot be loaded, bad flags, the server unreachable
  3  at least one run would fail`;

interface ReplayFlags extends ClientFlags {
  workflow?: string;
  queue?: string;
  label?: Record<string, string>;
  status?: string;
  id?: string;
  history?: string[];
  export?: string;
  concurrency?: string;
}

export function registerReplayCommand(workflow: Command): void {
  withClientFlags(
    workflow
      .command("replay <module>")
      .description("check a deploy: replay open runs (or exported history files) against new workflow code; exit 3 if any would fail")
      .option("--workflow <name>", "only runs of this workflow")
      .option("--queue <queue>", "only runs on this workflow task queue")
      .option("--label <key=value>", "only runs with this label (repeatable)", collectLabel)
      .option("--status <status>", "only runs in these statuses, comma-separated (default: created,running)")
      .option("--id <instance-id>", "only runs of this instance id")
      .option("--history <path>", "replay this history file, or the .json files of this directory, instead of asking a server (repeatable)", collectPath)
      .option("--export <name>", "the module's export that holds the workflows")
      .option("--concurrency <n>", "runs checked at once (default 32)")
      .addHelpText("after", REPLAY_HELP),
  ).action(async (modulePath: string, flags: ReplayFlags) => {
    const concurrency = flags.concurrency === undefined ? undefined : parseIntFlag("--concurrency", flags.concurrency, 1, 256);
    const status = flags.status?.split(",").map((text) => RunStatus[parseStatus(text)] as RunStatusName);
    if (flags.history && (flags.workflow || flags.queue || flags.label || flags.status || flags.id)) {
      throw new UsageError("--history replays the given files whole: drop --workflow, --queue, --label, --status and --id, which select runs on a server");
    }
    const loaded = await loadWorkflowModule(modulePath, flags.export);
    const { sdk, from, note } = await loadSdkFor(loaded.path);
    if (note) process.stderr.write(`dex: note: ${note}\n`);
    const options = { workflows: loaded.workflows, ...(concurrency ? { concurrency } : {}) };
    const report = async (check: ReplayCheck, source: "server" | "files") => {
      const summary = await check.summary();
      if (flags.json) printJson({ module: loaded.path, sdk: from, source, ...summary });
      else printReport(summary, source);
      process.exitCode = summary.fails > 0 ? REPLAY_EXIT.SOME_FAIL : REPLAY_EXIT.ALL_REPLAY;
    };
    if (flags.history) {
      await report(sdk.replayHistoryFiles({ ...options, paths: flags.history }), "files");
      return;
    }
    await withClient(flags, async (client) => {
      const filter = {
        ...(flags.workflow ? { workflowName: flags.workflow } : {}),
        ...(flags.queue ? { taskQueue: flags.queue } : {}),
        ...(flags.label ? { labels: flags.label } : {}),
        ...(status ? { status } : {}),
        ...(flags.id ? { instanceId: flags.id } : {}),
      };
      await report(sdk.replayRuns({ ...options, client, filter }), "server");
    });
  });
}

function collectPath(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function printReport(summary: ReplaySummary, source: string): void {
  if (summary.checked === 0) {
    process.stdout.write(source === "server" ? "no runs matched: nothing to check\n" : "no history files: nothing to check\n");
    return;
  }
  printTable(
    ["WORKFLOW", "CHECKED", "REPLAY", "WOULD FAIL"],
    summary.workflows.map((w) => [w.workflowName, String(w.checked), String(w.replays), String(w.fails)]),
  );
  const failures = summary.workflows.flatMap((w) => w.failures);
  if (failures.length > 0) {
    process.stdout.write(`\nruns that would fail:\n`);
    for (const failure of failures) process.stdout.write(describeFailure(failure));
  }
  const unknown = failures.filter((f) => f.status === "unknown-workflow").length;
  if (unknown > 0) {
    process.stdout.write(`\n${unknown} run(s) are of workflows the module does not register (unknown workflow): counted as failing, since no worker with this code could carry them on\n`);
  }
  process.stdout.write(
    summary.fails === 0
      ? `\nall ${summary.checked} run(s) replay with this code\n`
      : `\n${summary.fails} of ${summary.checked} run(s) would fail with this code\n`,
  );
}

function describeFailure(result: RunReplayResult): string {
  const who = result.source === "server" ? `run ${result.runId} (instance ${result.instanceId})` : `${result.source} (run ${result.runId || "?"})`;
  const failure = result.failure;
  if (result.status === "non-determinism" && failure?.eventSequence !== undefined) {
    return (
      `  ${who} ${result.workflowName}: diverges at history event ${failure.eventSequence} (${failure.eventKind ?? "?"})\n` +
      `    recorded: ${failure.recorded ?? "(nothing)"}\n` +
      `    produced: ${failure.produced ?? "(nothing)"}\n`
    );
  }
  return `  ${who} ${result.workflowName}: ${result.status}: ${failure?.message.split("\n")[0] ?? ""}\n`;
}

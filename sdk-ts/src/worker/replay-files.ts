/**
 * `replayHistoryFiles`: the replay check without a server, for the CI of a
 * repository that keeps histories exported with `dex workflow history --json`.
 * Same results and summary as `replayRuns`; the source of each is its file.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { createReplayCheck, mapConcurrently, type ReplayCheck } from "./replay-report.js";
import { parseHistory } from "./replay-history.js";
import { replayRun, type RunReplayResult, type WorkflowRegistry } from "./replay-run.js";
import { bounded, checkedRegistry } from "./replay-runs.js";

export interface ReplayHistoryFilesOptions {
  /** The new workflow code, by registered name, as given to createWorkflowWorker. Required. */
  workflows: WorkflowRegistry;
  /** History files, and directories whose `*.json` files are histories (not searched recursively). Required. */
  paths: readonly string[];
  /** Files checked at once. Default 4; 1 to 256. */
  concurrency?: number;
}

/**
 * Replays each history file against `workflows`. A path that does not exist,
 * or a file that is not a history, rejects the iteration naming the file: a
 * CI check must not pass because it read nothing.
 */
export function replayHistoryFiles(options: ReplayHistoryFilesOptions): ReplayCheck {
  const workflows = checkedRegistry(options.workflows, "replayHistoryFiles");
  if (!Array.isArray(options.paths) || options.paths.length === 0) throw new TypeError("replayHistoryFiles: paths must name at least one file or directory");
  const concurrency = bounded("replayHistoryFiles", "concurrency", options.concurrency ?? 4, 1, 256);
  async function* results(): AsyncGenerator<RunReplayResult> {
    yield* mapConcurrently(historyFiles(options.paths), concurrency, (file) => replayFile(file, workflows));
  }
  return createReplayCheck(results());
}

async function* historyFiles(paths: readonly string[]): AsyncGenerator<string> {
  for (const path of paths) {
    const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`history file ${path}: ${err.code === "ENOENT" ? "no such file or directory" : err.message}`);
    });
    if (!info.isDirectory()) {
      yield path;
      continue;
    }
    const names = (await readdir(path)).filter((name) => name.endsWith(".json")).sort();
    if (names.length === 0) throw new Error(`history directory ${path} holds no .json files (export them with \`dex workflow history <run> --json\`)`);
    for (const name of names) yield join(path, name);
  }
}

async function replayFile(file: string, workflows: WorkflowRegistry): Promise<RunReplayResult> {
  let history: ReturnType<typeof parseHistory>;
  try {
    history = parseHistory(await readFile(file, "utf8"));
  } catch (err) {
    throw new Error(`history file ${file} is not a dex history (\`dex workflow history <run> --json\` output): ${(err as Error).message}`);
  }
  const first = history.events[0];
  if (first?.attributes.case !== "runStarted") throw new Error(`history file ${file} does not start with run_started: export the whole history`);
  const started = first.attributes.value;
  const run = {
    runId: history.runId ?? "",
    instanceId: started.instanceId,
    workflowName: started.workflowName,
    taskQueue: started.taskQueue,
    source: file,
  };
  return replayRun(run, workflows, async function* () {
    yield history.events;
  });
}

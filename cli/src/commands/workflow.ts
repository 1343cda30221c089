import type { Command } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type GetRunResultResponse,
  HistoryEventSchema,
  InstanceIdConflictPolicy,
  InstanceIdReusePolicy,
  type RunInfo,
  RunStatus,
} from "@dex/proto";
import { UsageError } from "../errors.js";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { collectLabel, parseIntFlag, parseJsonFlag } from "../options.js";
import { formatValue, printFields, printJson, printTable } from "../output.js";
import { decodePayload, encodeJsonPayload, failureLine, failureView, isoTime, parseStatus, statusName } from "../payloads.js";
import { describeHistoryEvent } from "./history-format.js";
import { registerDeleteCommand } from "./delete.js";
import { registerDescribeCommand } from "./describe.js";
import { registerQueryCommand } from "./query.js";
import { registerRunControlCommands } from "./run-control.js";
import { registerResetCommand } from "./reset.js";
import { registerUpdateCommand } from "./update.js";
import { registerReplayCommand } from "./replay.js";
import { selector } from "./selector.js";
import { durationFlag } from "./schedule.js";

/** `result --wait` is what scripts wait on: it rides through a server restart (the SDK's default), not just a blip. */
const WAIT_RETRY_FOR = "30s";

const CONFLICT_POLICIES: Record<string, InstanceIdConflictPolicy> = {
  fail: InstanceIdConflictPolicy.FAIL,
  "use-existing": InstanceIdConflictPolicy.USE_EXISTING,
};
const REUSE_POLICIES: Record<string, InstanceIdReusePolicy> = {
  allow: InstanceIdReusePolicy.ALLOW,
  "allow-if-failed": InstanceIdReusePolicy.ALLOW_IF_FAILED,
  reject: InstanceIdReusePolicy.REJECT,
};

function policy<T>(flag: string, table: Record<string, T>, text: string | undefined): T | undefined {
  if (text === undefined) return undefined;
  const value = table[text];
  if (value === undefined) throw new UsageError(`${flag} must be one of ${Object.keys(table).join(", ")}, got "${text}"`);
  return value;
}

const TERMINAL = new Set<RunStatus>([
  RunStatus.COMPLETED,
  RunStatus.FAILED,
  RunStatus.CANCELLED,
  RunStatus.TERMINATED,
  RunStatus.CONTINUED_AS_NEW,
  RunStatus.TIMED_OUT,
]);

/**
 * Exit codes of `dex workflow result`, one per outcome, so a script can branch on `$?`. 1 stays
 * what it is for every dex command (the command itself failed: bad flags, no such run, server
 * unreachable) and 2 is left out (commonly a usage error), so an outcome is never mistaken for either.
 */
export const RESULT_EXIT = {
  COMPLETED: 0,
  FAILED: 3,
  CANCELLED: 4,
  TERMINATED: 5,
  CONTINUED_AS_NEW: 6,
  /** Not ended yet (without --wait): CREATED or RUNNING. */
  OPEN: 7,
  /** The run timeout passed (docs/decisions/0027-run-timeouts.md). */
  TIMED_OUT: 8,
} as const;

const RESULT_EXIT_HELP = `
Exit codes:
  0  COMPLETED (the result is printed)
  1  the command failed: bad flags, no such run, the server unreachable
  3  FAILED (the failure is printed)
  4  CANCELLED
  5  TERMINATED
  6  CONTINUED_AS_NEW ("continued as" names the run that carries on)
  7  not ended yet (without --wait)
  8  TIMED_OUT (its run timeout passed; the failure is printed)`;

function resultExitCode(status: string): number {
  return RESULT_EXIT[status as keyof typeof RESULT_EXIT] ?? RESULT_EXIT.OPEN;
}

export function registerWorkflowCommands(program: Command): void {
  const workflow = program.command("workflow").description("start, signal, cancel, inspect and list workflow runs");
  registerRunControlCommands(workflow);
  registerDeleteCommand(workflow);
  registerResetCommand(workflow);
  registerUpdateCommand(workflow);

  withClientFlags(
    workflow
      .command("start <workflow>")
      .description("start a workflow run")
      .requiredOption("--id <instance-id>", "instance id (at most one open run per instance id)")
      .option("--queue <queue>", "workflow task queue", "default")
      .option("--input <json>", "input as JSON")
      .option("--label <key=value>", "label the run (repeatable)", collectLabel)
      .option("--priority <n>", "priority from 0 to 100, higher runs sooner")
      .option("--request-id <id>", "idempotency key: repeating a start with it returns the same run")
      .option("--if-open <policy>", "when the instance id has an open run: fail (default) or use-existing")
      .option("--reuse <policy>", "when earlier runs of the instance id ended: allow (default), allow-if-failed, reject")
      .option("--concurrency-key <key>", "at most --concurrency-limit runs with this key execute at once; the others wait")
      .option("--concurrency-limit <n>", "runs with --concurrency-key that may execute at once (default 1)")
      .option("--run-timeout <duration>", "end the run TIMED_OUT if it is still open after this long, e.g. 30s, 1h, 7d (default: no limit)")
      .option("--workflow-task-timeout <duration>", "lease of each workflow task, 1s to 10m: a worker that holds one longer loses it (default 10s)"),
  ).action(
    async (
      workflowName: string,
      flags: ClientFlags & {
        id: string;
        queue: string;
        input?: string;
        label?: Record<string, string>;
        priority?: string;
        requestId?: string;
        ifOpen?: string;
        reuse?: string;
        concurrencyKey?: string;
        concurrencyLimit?: string;
        runTimeout?: string;
        workflowTaskTimeout?: string;
      },
    ) => {
      const runTimeoutMs = durationFlag("--run-timeout", flags.runTimeout);
      const workflowTaskTimeoutMs = durationFlag("--workflow-task-timeout", flags.workflowTaskTimeout);
      const input = parseJsonFlag("--input", flags.input);
      const conflictPolicy = policy("--if-open", CONFLICT_POLICIES, flags.ifOpen);
      const reusePolicy = policy("--reuse", REUSE_POLICIES, flags.reuse);
      const priority = flags.priority === undefined ? undefined : parseIntFlag("--priority", flags.priority, 0, 100);
      if (flags.concurrencyLimit !== undefined && flags.concurrencyKey === undefined) {
        throw new UsageError("--concurrency-limit needs --concurrency-key");
      }
      const concurrencyLimit =
        flags.concurrencyLimit === undefined ? undefined : parseIntFlag("--concurrency-limit", flags.concurrencyLimit, 1, 1_000_000);
      await withClient(flags, async (client) => {
        const response = await client.raw.client.startWorkflow({
          workflowName,
          instanceId: flags.id,
          taskQueue: flags.queue,
          input: encodeJsonPayload(input),
          labels: flags.label ?? {},
          ...(priority === undefined ? {} : { priority }),
          requestId: flags.requestId ?? "",
          ...(conflictPolicy === undefined ? {} : { conflictPolicy }),
          ...(reusePolicy === undefined ? {} : { reusePolicy }),
          concurrencyKey: flags.concurrencyKey ?? "",
          ...(concurrencyLimit === undefined ? {} : { concurrencyLimit }),
          ...(runTimeoutMs === undefined ? {} : { runTimeout: durationFromMs(runTimeoutMs) }),
          ...(workflowTaskTimeoutMs === undefined ? {} : { workflowTaskTimeout: durationFromMs(workflowTaskTimeoutMs) }),
        });
        if (flags.json) printJson({ runId: response.runId, instanceId: flags.id, started: response.started });
        else if (response.started) process.stdout.write(`started run ${response.runId} (instance ${flags.id})\n`);
        else process.stdout.write(`run ${response.runId} (instance ${flags.id}) is already open; not started again\n`);
      });
    },
  );

  withClientFlags(
    workflow
      .command("result <run>")
      .description("show a run's outcome (run id, or instance id for its current run); the exit code says which")
      .option("--wait", "wait until the run ends")
      .addHelpText("after", RESULT_EXIT_HELP),
  ).action(async (ref: string, flags: ClientFlags & { wait?: boolean }) => {
    await withClient(flags, async (client) => {
      const run = selector(ref);
      let response: GetRunResultResponse;
      do {
        const request = { run, wait: flags.wait ?? false };
        response = await client.retrying(() => client.raw.client.getRunResult(request));
      } while (flags.wait && !TERMINAL.has(response.status));
      const view = {
        runId: response.runId,
        status: statusName(response.status),
        result: decodePayload(response.result),
        failure: failureView(response.failure),
        continuedAsRunId: response.continuedAsRunId || undefined,
      };
      if (flags.json) printJson(view);
      else
        printFields([
          ["run", view.runId],
          ["status", view.status],
          ["result", view.result === undefined ? undefined : formatValue(view.result)],
          ["failure", failureLine(view.failure)],
          ["continued as", view.continuedAsRunId],
        ]);
      process.exitCode = resultExitCode(view.status);
    }, flags.wait ? WAIT_RETRY_FOR : undefined);
  });

  registerDescribeCommand(workflow);
  registerQueryCommand(workflow);
  registerReplayCommand(workflow);

  withClientFlags(
    workflow
      .command("history <run>")
      .description("print a run's event history (--json: the protocol's JSON, replayable)"),
  ).action(async (ref: string, flags: ClientFlags) => {
    await withClient(flags, async (client) => {
      const run = selector(ref);
      const events = [];
      let runId = "";
      for (let after = 0n; ; ) {
        const page = await client.raw.client.getRunHistory({ run, afterSequence: after, pageSize: 1000 });
        runId = page.runId;
        events.push(...page.events);
        const last = page.events.at(-1);
        if (!last || last.sequence >= page.historyLength) break;
        after = last.sequence;
      }
      if (flags.json) {
        printJson({ runId, events: events.map((event) => toJson(HistoryEventSchema, event)) });
        return;
      }
      printTable(
        ["SEQ", "TIME", "EVENT", "DETAILS"],
        events.map((event) => {
          const { kind, details } = describeHistoryEvent(event);
          return [String(event.sequence), isoTime(event.time) ?? "", kind, details];
        }),
      );
    });
  });

  withClientFlags(
    workflow
      .command("list")
      .description("list runs, newest first")
      .option("--status <status>", "only runs in this status (created, running, completed, failed, ...)")
      .option("--workflow <name>", "only runs of this workflow")
      .option("--id <instance-id>", "only runs of this instance id")
      .option("--queue <name>", "only runs on this workflow task queue")
      .option("--label <key=value>", "only runs with this label (repeatable)", collectLabel)
      .option("--since <time>", "only runs created at or after this ISO time")
      .option("--limit <n>", "show at most this many runs", "50"),
  ).action(
    async (
      flags: ClientFlags & { status?: string; workflow?: string; id?: string; queue?: string; label?: Record<string, string>; since?: string; limit: string },
    ) => {
      const limit = parseIntFlag("--limit", flags.limit, 1, 10_000);
      const statuses = flags.status ? flags.status.split(",").map(parseStatus) : [];
      const since = flags.since === undefined ? undefined : parseTime("--since", flags.since);
      await withClient(flags, async (client) => {
        const runs: RunInfo[] = [];
        let pageToken = "";
        do {
          const page = await client.raw.client.listRuns({
            workflowName: flags.workflow ?? "",
            statuses,
            instanceId: flags.id ?? "",
            taskQueue: flags.queue ?? "",
            labels: flags.label ?? {},
            ...(since ? { createdAfter: timestampFromDate(since) } : {}),
            pageSize: Math.min(limit - runs.length, 1000),
            pageToken,
          });
          runs.push(...page.runs);
          pageToken = page.nextPageToken;
        } while (pageToken && runs.length < limit);
        const views = runs.map(runInfoView);
        if (flags.json) printJson(views);
        else
          printTable(
            ["RUN ID", "INSTANCE", "WORKFLOW", "QUEUE", "STATUS", "CREATED"],
            views.map((r) => [r.runId, r.instanceId, r.workflowName, r.taskQueue, r.status, r.createTime ?? ""]),
          );
      });
    },
  );
}

function parseTime(flag: string, text: string): Date {
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw new UsageError(`${flag} must be an ISO time such as 2026-01-31T12:00:00Z, got "${text}"`);
  return date;
}

export function runInfoView(info: RunInfo | undefined) {
  return {
    runId: info?.runId ?? "",
    instanceId: info?.instanceId ?? "",
    workflowName: info?.workflowName ?? "",
    taskQueue: info?.taskQueue ?? "",
    status: statusName(info?.status ?? RunStatus.UNSPECIFIED),
    priority: info?.priority ?? 0,
    labels: info?.labels ?? {},
    customStatus: info?.customStatus || undefined,
    createTime: isoTime(info?.createTime),
    startTime: isoTime(info?.startTime),
    endTime: isoTime(info?.endTime),
    historyLength: Number(info?.historyLength ?? 0),
    parentRunId: info?.parentRunId || undefined,
  };
}

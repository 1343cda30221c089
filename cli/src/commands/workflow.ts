import type { Command } from "commander";
import { create, toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type DescribeRunResponse,
  type GetRunResultResponse,
  HistoryEventSchema,
  type RunInfo,
  RunSelectorSchema,
  RunStatus,
} from "@dex/proto";
import { UsageError } from "../errors.js";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { collectLabel, parseIntFlag, parseJsonFlag, runRef } from "../options.js";
import { formatValue, printFields, printJson, printTable } from "../output.js";
import { decodePayload, encodeJsonPayload, failureLine, failureView, isoTime, parseStatus, statusName } from "../payloads.js";
import { describeHistoryEvent } from "./history-format.js";

const TERMINAL = new Set<RunStatus>([
  RunStatus.COMPLETED,
  RunStatus.FAILED,
  RunStatus.CANCELLED,
  RunStatus.TERMINATED,
  RunStatus.CONTINUED_AS_NEW,
]);

function selector(ref: string) {
  const target = runRef(ref);
  return create(RunSelectorSchema, {
    target: "runId" in target ? { case: "runId", value: target.runId } : { case: "instanceId", value: target.instanceId },
  });
}

export function registerWorkflowCommands(program: Command): void {
  const workflow = program.command("workflow").description("start, inspect and list workflow runs");

  withClientFlags(
    workflow
      .command("start <workflow>")
      .description("start a workflow run")
      .requiredOption("--id <instance-id>", "instance id (at most one open run per instance id)")
      .option("--queue <queue>", "workflow task queue", "default")
      .option("--input <json>", "input as JSON")
      .option("--label <key=value>", "label the run (repeatable)", collectLabel)
      .option("--priority <n>", "priority from 0 to 100, higher runs sooner")
      .option("--request-id <id>", "idempotency key: repeating a start with it returns the same run"),
  ).action(
    async (
      workflowName: string,
      flags: ClientFlags & { id: string; queue: string; input?: string; label?: Record<string, string>; priority?: string; requestId?: string },
    ) => {
      const input = parseJsonFlag("--input", flags.input);
      const priority = flags.priority === undefined ? undefined : parseIntFlag("--priority", flags.priority, 0, 100);
      await withClient(flags, async (client) => {
        const response = await client.raw.client.startWorkflow({
          workflowName,
          instanceId: flags.id,
          taskQueue: flags.queue,
          input: encodeJsonPayload(input),
          labels: flags.label ?? {},
          ...(priority === undefined ? {} : { priority }),
          requestId: flags.requestId ?? "",
        });
        if (flags.json) printJson({ runId: response.runId, instanceId: flags.id, started: response.started });
        else if (response.started) process.stdout.write(`started run ${response.runId} (instance ${flags.id})\n`);
        else process.stdout.write(`run ${response.runId} (instance ${flags.id}) was already started by this request\n`);
      });
    },
  );

  withClientFlags(
    workflow
      .command("result <run>")
      .description("show a run's outcome (run id, or instance id for its current run)")
      .option("--wait", "wait until the run ends"),
  ).action(async (ref: string, flags: ClientFlags & { wait?: boolean }) => {
    await withClient(flags, async (client) => {
      const run = selector(ref);
      let response: GetRunResultResponse;
      do {
        response = await client.raw.client.getRunResult({ run, wait: flags.wait ?? false });
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
    });
  });

  withClientFlags(
    workflow.command("describe <run>").description("show a run's status, input, outcome and pending work"),
  ).action(async (ref: string, flags: ClientFlags) => {
    await withClient(flags, async (client) => {
      const response = await client.raw.client.describeRun({ run: selector(ref) });
      const view = describeView(response);
      if (flags.json) {
        printJson(view);
        return;
      }
      printFields([
        ["run", view.runId],
        ["instance", view.instanceId],
        ["workflow", view.workflowName],
        ["queue", view.taskQueue],
        ["status", view.status],
        ["custom status", view.customStatus],
        ["priority", String(view.priority)],
        ["labels", Object.keys(view.labels).length ? formatValue(view.labels) : undefined],
        ["created", view.createTime],
        ["started", view.startTime],
        ["ended", view.endTime],
        ["history events", String(view.historyLength)],
        ["input", view.input === undefined ? undefined : formatValue(view.input)],
        ["result", view.result === undefined ? undefined : formatValue(view.result)],
        ["failure", failureLine(view.failure)],
        ["waiting", view.waitingReason],
      ]);
      const task = view.pendingWorkflowTask;
      if (task) {
        process.stdout.write(
          `\nworkflow task: attempt ${task.attempt}, ${task.running ? "running" : "waiting"}` +
            (task.lastFailure ? `, last failure: ${failureLine(task.lastFailure)}` : "") +
            "\n",
        );
      }
      if (view.pendingActivities.length) {
        process.stdout.write("\npending activities:\n");
        printTable(
          ["SEQ", "ACTIVITY", "QUEUE", "ATTEMPT", "STATE", "NEXT ATTEMPT", "LAST FAILURE"],
          view.pendingActivities.map((a) => [
            String(a.seq),
            a.activityName,
            a.taskQueue,
            String(a.attempt),
            a.running ? "running" : a.waitingReason || "waiting",
            a.nextAttemptTime ?? "",
            failureLine(a.lastFailure) ?? "",
          ]),
        );
      }
    });
  });

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
      .option("--label <key=value>", "only runs with this label (repeatable)", collectLabel)
      .option("--since <time>", "only runs created at or after this ISO time")
      .option("--limit <n>", "show at most this many runs", "50"),
  ).action(
    async (
      flags: ClientFlags & { status?: string; workflow?: string; id?: string; label?: Record<string, string>; since?: string; limit: string },
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
            ["RUN ID", "INSTANCE", "WORKFLOW", "STATUS", "CREATED"],
            views.map((r) => [r.runId, r.instanceId, r.workflowName, r.status, r.createTime ?? ""]),
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

function runInfoView(info: RunInfo | undefined) {
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

function describeView(response: DescribeRunResponse) {
  const task = response.pendingWorkflowTask;
  return {
    ...runInfoView(response.info),
    input: decodePayload(response.input),
    result: decodePayload(response.result),
    failure: failureView(response.failure),
    waitingReason: response.waitingReason || undefined,
    continuedAsRunId: response.continuedAsRunId || undefined,
    pendingWorkflowTask: task
      ? { attempt: task.attempt, running: task.running, lastFailure: failureView(task.lastFailure), nextAttemptTime: isoTime(task.nextAttemptTime) }
      : undefined,
    pendingActivities: response.pendingActivities.map((a) => ({
      seq: a.seq,
      activityName: a.activityName,
      taskQueue: a.taskQueue,
      attempt: a.attempt,
      running: a.running,
      nextAttemptTime: isoTime(a.nextAttemptTime),
      lastFailure: failureView(a.lastFailure),
      waitingReason: a.waitingReason || undefined,
    })),
  };
}

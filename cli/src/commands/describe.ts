/** `dex workflow describe`: a run's status, input, outcome, and everything it is waiting for. */
import type { Command } from "commander";
import type { DescribeRunResponse } from "@dex/proto";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { formatValue, printFields, printTable } from "../output.js";
import { decodePayload, failureLine, failureView, formatDuration, isoTime } from "../payloads.js";
import { selector } from "./selector.js";
import { runInfoView } from "./workflow.js";
import { askPending, printPending } from "./query.js";

export function registerDescribeCommand(workflow: Command): void {
  withClientFlags(
    workflow.command("describe <run>").description("show a run's status, input, outcome and pending work"),
  ).action(async (ref: string, flags: ClientFlags) => {
    await withClient(flags, async (client) => {
      const view = describeView(await client.raw.client.describeRun({ run: selector(ref) }));
      // Where the workflow code waits, from a worker (built-in query, decision 0023); open runs only.
      const code = view.status === "RUNNING" || view.status === "CREATED" ? await askPending(client, view.runId) : undefined;
      if (flags.json) printJson({ ...view, ...(code ? { codePending: code.pending, codePendingNotAsked: code.notAsked } : {}) });
      else {
        printDescription(view);
        if (code) printPending(code);
      }
    });
  });
}

type DescribeView = ReturnType<typeof describeView>;

function describeView(response: DescribeRunResponse) {
  const task = response.pendingWorkflowTask;
  return {
    ...runInfoView(response.info),
    concurrencyKey: response.info?.concurrencyKey || undefined,
    runTimeout: formatDuration(response.info?.runTimeout),
    runDeadline: isoTime(response.info?.runDeadline),
    workflowTaskTimeout: formatDuration(response.info?.workflowTaskTimeout),
    input: decodePayload(response.input),
    result: decodePayload(response.result),
    failure: failureView(response.failure),
    waitingReason: response.waitingReason || undefined,
    continuedAsRunId: response.continuedAsRunId || undefined,
    resetFromRunId: response.resetFromRunId || undefined,
    resetToRunId: response.resetToRunId || undefined,
    resetReason: response.resetReason || undefined,
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
    pendingTimers: response.pendingTimers.map((t) => ({ seq: t.seq, fireTime: isoTime(t.fireTime) })),
    pendingEventWaits: response.pendingEventWaits.map((w) => ({
      seq: w.seq,
      eventName: w.eventName || w.eventId,
      timeoutTime: isoTime(w.timeoutTime),
    })),
    receivedEvents: response.receivedEvents.map((r) => ({ eventName: r.eventName, inHistory: r.inHistory, inInbox: r.inInbox })),
    pendingChildRuns: response.pendingChildRuns.map((c) => ({
      seq: c.seq,
      instanceId: c.instanceId,
      runId: c.runId || undefined,
      workflowName: c.workflowName,
    })),
  };
}

function printJson(view: DescribeView & Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
}

function printDescription(view: DescribeView): void {
  printFields([
    ["run", view.runId],
    ["instance", view.instanceId],
    ["workflow", view.workflowName],
    ["queue", view.taskQueue],
    ["status", view.status],
    ["custom status", view.customStatus],
    ["priority", String(view.priority)],
    ["concurrency key", view.concurrencyKey],
    ["run timeout", view.runTimeout === undefined ? undefined : `${view.runTimeout} (ends TIMED_OUT at ${view.runDeadline ?? "?"})`],
    ["workflow task timeout", view.workflowTaskTimeout],
    ["labels", Object.keys(view.labels).length ? formatValue(view.labels) : undefined],
    ["parent run", view.parentRunId],
    ["created", view.createTime],
    ["started", view.startTime],
    ["ended", view.endTime],
    ["history events", String(view.historyLength)],
    ["input", view.input === undefined ? undefined : formatValue(view.input)],
    ["result", view.result === undefined ? undefined : formatValue(view.result)],
    ["failure", failureLine(view.failure)],
    ["continued as", view.continuedAsRunId],
    ["reset from", view.resetFromRunId],
    ["reset reason", view.resetReason],
    ["reset to", view.resetToRunId],
    ["waiting", view.waitingReason],
  ]);
  if (view.failure?.stack) process.stdout.write(`\nstack:\n${view.failure.stack}\n`);
  const task = view.pendingWorkflowTask;
  if (task) {
    process.stdout.write(
      `\nworkflow task: attempt ${task.attempt}, ${task.running ? "running" : "waiting"}` +
        (task.lastFailure ? `, last failure: ${failureLine(task.lastFailure)}` : "") +
        "\n",
    );
    // A failing task is usually a bug in workflow code: where it threw is what the user needs next.
    if (task.lastFailure?.stack) process.stdout.write(`\nworkflow task failure stack:\n${task.lastFailure.stack}\n`);
  }
  section(
    "pending activities",
    ["SEQ", "ACTIVITY", "QUEUE", "ATTEMPT", "STATE", "NEXT ATTEMPT", "LAST FAILURE"],
    view.pendingActivities.map((a) => [
      String(a.seq),
      a.activityName,
      a.taskQueue,
      String(a.attempt),
      a.running ? "running" : a.waitingReason?.startsWith("backing off") ? "backing off" : "waiting",
      a.nextAttemptTime ?? "",
      failureLine(a.lastFailure) ?? "",
    ]),
  );
  // The reasons are sentences: under the table, not in a column that would stretch every row.
  for (const a of view.pendingActivities) {
    if (a.waitingReason) process.stdout.write(`  seq ${a.seq} is waiting: ${a.waitingReason}\n`);
  }
  section("timers", ["SEQ", "FIRES AT"], view.pendingTimers.map((t) => [String(t.seq), t.fireTime ?? ""]));
  section(
    "awaited events",
    ["SEQ", "EVENT", "TIMES OUT AT"],
    view.pendingEventWaits.map((w) => [String(w.seq), w.eventName, w.timeoutTime ?? "never"]),
  );
  section(
    "received events",
    ["EVENT", "SEEN BY THE WORKFLOW", "NOT YET HANDED OUT"],
    view.receivedEvents.map((r) => [r.eventName, String(r.inHistory), String(r.inInbox)]),
  );
  section(
    "child runs",
    ["SEQ", "INSTANCE", "WORKFLOW", "RUN ID"],
    view.pendingChildRuns.map((c) => [String(c.seq), c.instanceId, c.workflowName, c.runId ?? "(starting)"]),
  );
}

function section(title: string, headers: string[], rows: string[][]): void {
  if (rows.length === 0) return;
  process.stdout.write(`\n${title}:\n`);
  printTable(headers, rows);
}

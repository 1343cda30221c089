/** ClientService: validation and proto mapping around the engine. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ClientService, type PendingActivitySchema, type PendingWorkflowTaskSchema, type ServiceHandlers } from "@dex/proto";
import type { Engine } from "../engine/context.js";
import { decodeFailure, decodePayload } from "../engine/events.js";
import { DEFAULT_PRIORITY, DEFAULT_QUEUE } from "../engine/model.js";
import { describeRun, getRunHistory, getRunResult, listRunPage } from "../engine/runs.js";
import { startWorkflow } from "../engine/start.js";
import {
  intInRange,
  invalid,
  labelsField,
  optionalString,
  queueName,
  requireString,
  timestampField,
} from "../engine/validation.js";
import type { PendingActivityRecord, PendingWorkflowTaskRecord } from "../store/pending.js";
import { runSelector, DEFAULT_POLL_WAIT_MS, unimplemented, waitDeadline } from "./common.js";
import { conflictPolicyFromProto, reusePolicyFromProto, runInfo, statusFromProto, statusToProto, ts } from "./convert.js";
import { decodePageToken, encodePageToken, filterFingerprint } from "./page-token.js";

export function clientHandlers(engine: Engine): ServiceHandlers<typeof ClientService> {
  return {
    async startWorkflow(req) {
      const conflictPolicy = conflictPolicyFromProto(req.conflictPolicy);
      if (conflictPolicy === null) throw invalid(`conflict_policy has an unknown value ${req.conflictPolicy}`);
      const reusePolicy = reusePolicyFromProto(req.reusePolicy);
      if (reusePolicy === null) throw invalid(`reuse_policy has an unknown value ${req.reusePolicy}`);
      const concurrencyKey = optionalString("concurrency_key", req.concurrencyKey);
      return startWorkflow(engine, {
        workflowName: requireString("workflow_name", req.workflowName),
        instanceId: requireString("instance_id", req.instanceId),
        taskQueue: queueName("task_queue", req.taskQueue, DEFAULT_QUEUE),
        input: req.input,
        labels: labelsField("labels", req.labels),
        priority: req.priority === undefined ? DEFAULT_PRIORITY : intInRange("priority", req.priority, 0, 100),
        requestId: optionalString("request_id", req.requestId),
        conflictPolicy,
        reusePolicy,
        concurrencyKey: concurrencyKey === "" ? null : concurrencyKey,
        concurrencyLimit:
          concurrencyKey === "" ? null : intInRange("concurrency_limit", req.concurrencyLimit, 0, 1_000_000) || 1,
      });
    },

    async describeRun(req) {
      const { run, workflowTask, activities } = await describeRun(engine, runSelector("run", req.run));
      return {
        info: runInfo(run),
        input: decodePayload(run.input),
        result: decodePayload(run.result),
        failure: decodeFailure(run.failure),
        pendingWorkflowTask: workflowTask ? pendingWorkflowTask(workflowTask) : undefined,
        pendingActivities: activities.map(pendingActivity),
        waitingReason: waitingReason(run.status, run.taskQueue, workflowTask, activities),
        continuedAsRunId: run.continuedAsRunId ?? "",
      };
    },

    async getRunHistory(req, context) {
      if (req.afterSequence < 0n) throw invalid(`after_sequence must not be negative, got ${req.afterSequence}`);
      const pageSize = req.pageSize === 0 ? 1000 : intInRange("page_size", req.pageSize, 0, 10_000);
      const page = await getRunHistory(
        engine,
        {
          selector: runSelector("run", req.run),
          afterSequence: Number(req.afterSequence),
          pageSize,
          waitUntil: req.waitNewEvents ? waitDeadline(DEFAULT_POLL_WAIT_MS, context, engine.maxPollWaitMs) : undefined,
        },
        context.signal,
      );
      return {
        events: page.events,
        runId: page.runId,
        historyLength: BigInt(page.historyLength),
        status: statusToProto(page.status),
      };
    },

    async getRunResult(req, context) {
      const run = await getRunResult(
        engine,
        {
          selector: runSelector("run", req.run),
          waitUntil: req.wait ? waitDeadline(DEFAULT_POLL_WAIT_MS, context, engine.maxPollWaitMs) : undefined,
        },
        context.signal,
      );
      return {
        runId: run.id,
        status: statusToProto(run.status),
        result: decodePayload(run.result),
        failure: decodeFailure(run.failure),
        continuedAsRunId: run.continuedAsRunId ?? "",
      };
    },

    async listRuns(req) {
      const statuses = req.statuses.map((status, i) => {
        const domain = statusFromProto(status);
        if (domain === null) throw invalid(`statuses[${i}] has an unknown value ${status}`);
        return domain;
      });
      const filter = {
        workflowName: optionalString("workflow_name", req.workflowName) || undefined,
        statuses: statuses.filter((s) => s !== undefined),
        instanceId: optionalString("instance_id", req.instanceId) || undefined,
        labels: labelsField("labels", req.labels),
        createdAfter: timestampField("created_after", req.createdAfter),
        createdBefore: timestampField("created_before", req.createdBefore),
      };
      const pageSize = req.pageSize === 0 ? 100 : intInRange("page_size", req.pageSize, 0, 1000);
      const fingerprint = filterFingerprint(filter);
      const beforeId = req.pageToken === "" ? undefined : decodePageToken(req.pageToken, fingerprint);
      const rows = await listRunPage(engine, { ...filter, beforeId, limit: pageSize + 1 });
      const page = rows.slice(0, pageSize);
      const more = rows.length > pageSize;
      return {
        runs: page.map(runInfo),
        nextPageToken: more ? encodePageToken(page.at(-1)!.id, fingerprint) : "",
      };
    },

    sendEvent: unimplemented("SendEvent"),
    sendEventWithStart: unimplemented("SendEventWithStart"),
    cancelRun: unimplemented("CancelRun"),
    terminateRun: unimplemented("TerminateRun"),
  };
}

function pendingWorkflowTask(task: PendingWorkflowTaskRecord): MessageInitShape<typeof PendingWorkflowTaskSchema> {
  const running = task.leasedUntil !== null && task.leasedUntil > task.now;
  return {
    attempt: running ? task.attempt : task.attempt + 1,
    running,
    lastFailure: decodeFailure(task.lastFailure),
    nextAttemptTime: running ? undefined : ts(task.visibleAt),
  };
}

function pendingActivity(task: PendingActivityRecord): MessageInitShape<typeof PendingActivitySchema> {
  const running = task.leasedUntil !== null;
  let waitingReason = "";
  if (!running) {
    waitingReason =
      task.visibleAt > task.now
        ? `backing off after attempt ${task.attempt} failed; next attempt at ${task.visibleAt.toISOString()}`
        : `waiting for a worker polling activity task queue "${task.queueName}"`;
  }
  return {
    seq: task.seq,
    activityName: task.activityName,
    taskQueue: task.queueName,
    attempt: running ? task.attempt : task.attempt + 1,
    running,
    nextAttemptTime: running ? undefined : ts(task.visibleAt),
    lastFailure: decodeFailure(task.lastFailure),
    waitingReason,
  };
}

function waitingReason(
  status: string,
  queue: string,
  task: PendingWorkflowTaskRecord | undefined,
  activities: PendingActivityRecord[],
): string {
  if (status !== "CREATED" && status !== "RUNNING") return "";
  if (task) {
    const running = task.leasedUntil !== null && task.leasedUntil > task.now;
    if (running) return "";
    if (task.visibleAt > task.now) {
      return `workflow task attempt ${task.attempt} failed; retrying at ${task.visibleAt.toISOString()}`;
    }
    return `waiting for a workflow worker polling task queue "${queue}"`;
  }
  if (activities.length > 0) return `waiting for ${activities.length} activit${activities.length === 1 ? "y" : "ies"}`;
  return "";
}

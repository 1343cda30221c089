/** ClientService: validation and proto mapping around the engine. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  ClientService,
  type PendingActivitySchema,
  type PendingWorkflowTaskSchema,
  type ServiceHandlers,
  type StartWorkflowRequest,
} from "@dex/proto";
import type { Engine } from "../engine/context.js";
import { decodeFailure, decodePayload } from "../engine/events.js";
import { DEFAULT_PRIORITY, DEFAULT_QUEUE } from "../engine/model.js";
import { cancelRun, sendEvent, sendEventWithStart, terminateRun } from "../engine/lifecycle.js";
import { MAX_REASON_LENGTH, type Limits } from "../engine/limits.js";
import { deleteRun } from "../engine/retention.js";
import {
  activityRunning,
  describeRun,
  getRunHistory,
  getRunResult,
  listRunPage,
  workflowTaskRunning,
  type QueueView,
} from "../engine/runs.js";
import { startWorkflow, type StartRequest } from "../engine/start.js";
import { runTimeoutField, workflowTaskTimeoutField } from "../engine/run-timeout-fields.js";
import {
  intInRange,
  invalid,
  labelsField,
  optionalString,
  optionalText,
  payloadField,
  queueName,
  requireString,
  timestampField,
} from "../engine/validation.js";
import type { PendingActivityRecord, PendingWorkflowTaskRecord } from "../store/pending.js";
import { runSelector, DEFAULT_POLL_WAIT_MS, waitDeadline } from "./common.js";
import { MAX_POLL_WAIT_MS } from "./common.js";
import { durationField } from "../engine/validation.js";
import { conflictPolicyFromProto, reusePolicyFromProto, runInfo, statusFromProto, statusToProto, ts } from "./convert.js";
import { decodePageToken, encodePageToken, filterFingerprint } from "./page-token.js";
import { activityWaitingReason, waitingReason } from "./waiting-reasons.js";
import { workflowTask } from "./worker-service.js";
import { handleResetRun, resetDescribeFields } from "./reset.js";

/** A send's id and name, validated: either may be empty (see externalEventIdentity), not both. */
function eventIdAndName(req: { eventId: string; eventName: string }): { eventId: string; eventName: string } {
  if (req.eventId === "" && req.eventName === "") {
    throw invalid("event_name or event_id is required: event_name is what the workflow waits for, event_id its dedup key");
  }
  return { eventId: optionalString("event_id", req.eventId), eventName: optionalString("event_name", req.eventName) };
}
import { updateRun } from "../engine/updates.js";
import { updateRunResponse } from "./updates.js";
import { queryRunHandler } from "./query-service.js";
import { traceContextOf } from "./trace-context.js";

/** history_events.sequence is an integer column. */
const MAX_SEQUENCE = 2n ** 31n - 1n;

export function clientHandlers(engine: Engine): ServiceHandlers<typeof ClientService> {
  return {
    async startWorkflow(req, context) {
      const request = { ...startRequest(req, "", engine.limits), traceContext: traceContextOf(context.metadata) };
      // Eager workflow start (engine/eager-start.ts); api/auth.ts checked the key may take tasks.
      const eagerWorkerId = req.eager ? requireString("eager.worker_id", req.eager.workerId) : null;
      const started = await startWorkflow(engine, { ...request, eagerWorkerId });
      // Counted here, after the commit (children and continue-as-new count in their completion's effects).
      if (started.started) engine.observer.runStarted(request.taskQueue);
      return {
        runId: started.runId,
        started: started.started,
        eagerTask: started.eagerTask ? workflowTask(started.eagerTask) : undefined,
      };
    },

    async sendEvent(req) {
      return sendEvent(engine, {
        selector: runSelector("run", req.run),
        ...eventIdAndName(req),
        payload: payloadField("payload", req.payload, engine.limits),
      });
    },

    async sendEventWithStart(req, context) {
      if (!req.start) throw invalid("start is required: the run to start when the instance id has no open run");
      const request = { ...startRequest(req.start, "start.", engine.limits), traceContext: traceContextOf(context.metadata) };
      const sent = await sendEventWithStart(engine, {
        ...request,
        ...eventIdAndName(req),
        payload: payloadField("payload", req.payload, engine.limits),
      });
      if (sent.started) engine.observer.runStarted(request.taskQueue);
      return sent;
    },

    async updateRun(req, context) {
      const selector = runSelector("run", req.run);
      const name = requireString("name", req.name);
      const updateId = requireString("update_id", req.updateId);
      const args = payloadField("args", req.args, engine.limits);
      const waitMs = durationField("wait", req.wait, { allowZero: true, maxMs: MAX_POLL_WAIT_MS }) ?? DEFAULT_POLL_WAIT_MS;
      const waitUntil = waitDeadline(waitMs, context, engine.maxPollWaitMs);
      const { runId, outcome } = await updateRun(engine, { selector, name, args, updateId, waitUntil }, context.signal);
      return updateRunResponse(runId, outcome);
    },

    async cancelRun(req) {
      return cancelRun(engine, {
        selector: runSelector("run", req.run),
        reason: optionalText("reason", req.reason, MAX_REASON_LENGTH),
      });
    },

    async deleteRun(req) {
      const deleted = await deleteRun(engine, req.runId);
      return { runId: deleted.runId, historyEventsDeleted: BigInt(deleted.historyEventsDeleted) };
    },
    // Queries (api/query-service.ts).
    queryRun: (req, context) => queryRunHandler(engine, req, context),

    async terminateRun(req) {
      return terminateRun(engine, {
        selector: runSelector("run", req.run),
        reason: optionalText("reason", req.reason, MAX_REASON_LENGTH),
      });
    },

    async resetRun(req) {
      return handleResetRun(engine, req);
    },

    async describeRun(req) {
      const description = await describeRun(engine, runSelector("run", req.run));
      const { run, workflowTask, activities } = description;
      return {
        info: runInfo(run),
        input: decodePayload(run.input),
        result: decodePayload(run.result),
        failure: decodeFailure(run.failure),
        pendingWorkflowTask: workflowTask ? pendingWorkflowTask(workflowTask) : undefined,
        pendingActivities: activities.map((a) => pendingActivity(a, description.queues)),
        pendingTimers: description.timers.map((t) => ({ seq: t.seq, fireTime: ts(t.fireAt) })),
        pendingEventWaits: description.eventWaits.map((w) => ({
          seq: w.seq,
          eventId: w.eventName,
          eventName: w.eventName,
          timeoutTime: ts(w.timeoutAt),
        })),
        receivedEvents: description.receivedEvents,
        pendingChildRuns: description.children.map((c) => ({
          seq: c.seq,
          instanceId: c.instanceId,
          runId: c.runId,
          workflowName: c.workflowName,
        })),
        waitingReason: waitingReason(description),
        continuedAsRunId: run.continuedAsRunId ?? "",
        ...(await resetDescribeFields(engine, run.id)),
      };
    },

    async getRunHistory(req, context) {
      if (req.afterSequence < 0n) throw invalid(`after_sequence must not be negative, got ${req.afterSequence}`);
      // Sequences are 32-bit in the database: nothing follows the largest, so a larger value reads as it.
      const afterSequence = Number(req.afterSequence > MAX_SEQUENCE ? MAX_SEQUENCE : req.afterSequence);
      const pageSize = req.pageSize === 0 ? 1000 : intInRange("page_size", req.pageSize, 0, 10_000);
      const page = await getRunHistory(
        engine,
        {
          selector: runSelector("run", req.run),
          afterSequence,
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
        taskQueue: req.taskQueue === "" ? undefined : queueName("task_queue", req.taskQueue),
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

  };
}

/** StartWorkflow's fields, validated; `prefix` names them inside a larger request ("start."). */
function startRequest(req: StartWorkflowRequest, prefix: string, limits: Limits): StartRequest {
  const conflictPolicy = conflictPolicyFromProto(req.conflictPolicy);
  if (conflictPolicy === null) throw invalid(`${prefix}conflict_policy has an unknown value ${req.conflictPolicy}`);
  const reusePolicy = reusePolicyFromProto(req.reusePolicy);
  if (reusePolicy === null) throw invalid(`${prefix}reuse_policy has an unknown value ${req.reusePolicy}`);
  const concurrencyKey = optionalString(`${prefix}concurrency_key`, req.concurrencyKey);
  return {
    workflowName: requireString(`${prefix}workflow_name`, req.workflowName),
    instanceId: requireString(`${prefix}instance_id`, req.instanceId),
    taskQueue: queueName(`${prefix}task_queue`, req.taskQueue, DEFAULT_QUEUE),
    input: payloadField(`${prefix}input`, req.input, limits),
    labels: labelsField(`${prefix}labels`, req.labels),
    priority: req.priority === undefined ? DEFAULT_PRIORITY : intInRange(`${prefix}priority`, req.priority, 0, 100),
    requestId: optionalString(`${prefix}request_id`, req.requestId),
    conflictPolicy,
    reusePolicy,
    concurrencyKey: concurrencyKey === "" ? null : concurrencyKey,
    concurrencyLimit:
      concurrencyKey === "" ? null : intInRange(`${prefix}concurrency_limit`, req.concurrencyLimit, 0, 1_000_000) || 1,
    runTimeoutMs: runTimeoutField(`${prefix}run_timeout`, req.runTimeout) ?? null,
    workflowTaskTimeoutMs: workflowTaskTimeoutField(`${prefix}workflow_task_timeout`, req.workflowTaskTimeout) ?? null,
  };
}

function pendingWorkflowTask(task: PendingWorkflowTaskRecord): MessageInitShape<typeof PendingWorkflowTaskSchema> {
  const running = workflowTaskRunning(task);
  return {
    attempt: running ? task.attempt : task.attempt + 1,
    running,
    lastFailure: decodeFailure(task.lastFailure),
    nextAttemptTime: running ? undefined : ts(task.visibleAt),
  };
}

function pendingActivity(task: PendingActivityRecord, queues: QueueView[]): MessageInitShape<typeof PendingActivitySchema> {
  const running = activityRunning(task);
  return {
    seq: task.seq,
    activityName: task.activityName,
    taskQueue: task.queueName,
    attempt: running ? task.attempt : task.attempt + 1,
    running,
    nextAttemptTime: running ? undefined : ts(task.visibleAt),
    lastFailure: decodeFailure(task.lastFailure),
    waitingReason: activityWaitingReason(task, queues),
  };
}

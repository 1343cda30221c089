/** WorkerService: the worker protocol (docs/worker-protocol.md) on top of the engine. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  WorkerService,
  WorkflowTaskFailedCause,
  type ActivityTaskSchema,
  type CompleteWorkflowTaskRequest_EagerActivitySlots,
  type ServiceHandlers,
  type WorkflowTaskSchema,
} from "@dex/proto";
import type { EagerOffer } from "../engine/eager-activities.js";
import {
  activityOptions,
  heartbeatActivityTask,
  pollActivityTasks,
  type PolledActivityTask,
} from "../engine/activity-tasks.js";
import type { Engine } from "../engine/context.js";
import { decodePayload } from "../engine/events.js";
import { QueueType } from "../engine/model.js";
import { taskLeaseEnded } from "../engine/task-queues.js";
import {
  enumField,
  intInRange,
  invalid,
  payloadField,
  queueName,
  requireFailure,
  requireString,
} from "../engine/validation.js";
import { completeWorkflowTaskGrouped } from "../engine/workflow-task-completions.js";
import { rejectionsField } from "../engine/updates.js";
import { failWorkflowTask, pollWorkflowTasks, type PolledWorkflowTask } from "../engine/workflow-tasks.js";
import { checkCompletion, checkFailure } from "./activity-outcomes.js";
import { reportActivityTasksHandler } from "./activity-reports.js";
import { pollRequest } from "./common.js";
import { pollQueryTasksHandler, respondQueryTaskHandler } from "./query-service.js";
import { decodeActivityTaskToken, decodeWorkflowTaskToken, encodeActivityTaskToken, encodeWorkflowTaskToken } from "./task-token.js";

const KNOWN_CAUSES = Object.values(WorkflowTaskFailedCause).filter((v): v is number => typeof v === "number");

export function workerHandlers(engine: Engine): ServiceHandlers<typeof WorkerService> {
  return {
    async pollWorkflowTasks(req, context) {
      const tasks = await pollWorkflowTasks(engine, await pollRequest(engine, QueueType.WORKFLOW, req, context), context.signal);
      return { tasks: tasks.map(workflowTask) };
    },

    async completeWorkflowTask(req) {
      const ref = decodeWorkflowTaskToken(req.taskToken);
      const offers = eagerOffers(req.eagerActivitySlots);
      const rejected = rejectionsField(req.rejectedUpdates, engine.limits);
      const { historyLength, activityTasks } = await completeWorkflowTaskGrouped(engine, ref, req.commands, offers, rejected);
      taskLeaseEnded(engine, QueueType.WORKFLOW, ref.queue);
      return { historyLength: BigInt(historyLength), activityTasks: activityTasks.map(activityTask) };
    },

    async failWorkflowTask(req) {
      const ref = decodeWorkflowTaskToken(req.taskToken);
      const failure = requireFailure(req.failure, engine.limits);
      const cause = enumField("cause", req.cause, KNOWN_CAUSES);
      const { nextAttemptAt } = await failWorkflowTask(engine, ref, failure, cause);
      taskLeaseEnded(engine, QueueType.WORKFLOW, ref.queue);
      return { nextAttemptTime: timestampFromDate(nextAttemptAt) };
    },

    async pollActivityTasks(req, context) {
      const tasks = await pollActivityTasks(engine, await pollRequest(engine, QueueType.ACTIVITY, req, context), context.signal);
      return { tasks: tasks.map(activityTask) };
    },

    completeActivityTask: (req) => checkCompletion(engine, req).record(),

    failActivityTask: (req) => checkFailure(engine, req).record(),

    async heartbeatActivityTask(req) {
      const ref = decodeActivityTaskToken(req.taskToken);
      const result = await heartbeatActivityTask(engine, ref, payloadField("details", req.details, engine.limits));
      return { cancelRequested: result.cancelRequested, leaseDeadline: timestampFromDate(result.leaseDeadline) };
    },

    reportActivityTasks: reportActivityTasksHandler(engine),

    // Queries (api/query-service.ts).
    pollQueryTasks: (req, context) => pollQueryTasksHandler(engine, req, context),
    respondQueryTask: (req) => respondQueryTaskHandler(engine, req),
  };
}

/** Most entries of eager_activity_slots (each names another queue). */
export const MAX_EAGER_OFFERS = 20;
/** Most slots one entry may offer: as many as one poll may ask for. */
const MAX_EAGER_SLOTS = 100;

/** CompleteWorkflowTaskRequest.eager_activity_slots, validated (INVALID_ARGUMENT before anything is written). */
function eagerOffers(entries: CompleteWorkflowTaskRequest_EagerActivitySlots[]): EagerOffer[] {
  if (entries.length > MAX_EAGER_OFFERS) {
    throw invalid(`eager_activity_slots has ${entries.length} entries; at most ${MAX_EAGER_OFFERS}, one per activity queue`);
  }
  const seen = new Set<string>();
  const offers: EagerOffer[] = [];
  entries.forEach((entry, i) => {
    const field = `eager_activity_slots[${i}]`;
    const queue = queueName(`${field}.task_queue`, entry.taskQueue);
    if (seen.has(queue)) throw invalid(`${field}.task_queue "${queue}" is offered twice; offer each activity queue once`);
    seen.add(queue);
    const slots = intInRange(`${field}.slots`, entry.slots, 0, MAX_EAGER_SLOTS);
    if (slots === 0) return;
    offers.push({ queue, slots, workerId: requireString(`${field}.worker_id`, entry.workerId) });
  });
  return offers;
}

/** The WorkflowTask message of a claimed task: the poll's answer and an eager start's (client-service.ts). */
export function workflowTask(task: PolledWorkflowTask): MessageInitShape<typeof WorkflowTaskSchema> {
  return {
    taskToken: encodeWorkflowTaskToken(task.ref),
    runId: task.ref.runId,
    instanceId: task.instanceId,
    workflowName: task.workflowName,
    taskQueue: task.ref.queue,
    attempt: task.attempt,
    taskTime: timestampFromDate(task.taskTime),
    leaseDeadline: timestampFromDate(task.leaseDeadline),
    historyLength: BigInt(task.historyLength),
    history: task.history,
    newEvents: task.newEvents,
    traceContext: task.traceContext ?? {},
  };
}

/** The ActivityTask message of a claimed task: the poll's answer and a completion's eager tasks. */
function activityTask({ ref, row }: PolledActivityTask): MessageInitShape<typeof ActivityTaskSchema> {
  const options = activityOptions(row);
  return {
    taskToken: encodeActivityTaskToken(ref),
    runId: row.runId,
    instanceId: row.instanceId,
    workflowName: row.workflowName,
    seq: row.seq,
    activityName: row.activityName,
    taskQueue: row.queue,
    input: decodePayload(row.input),
    attempt: row.attempt,
    scheduleTime: timestampFromDate(row.scheduledAt),
    leaseDeadline: row.leasedUntil ? timestampFromDate(row.leasedUntil) : undefined,
    startToCloseTimeout: options.startToCloseTimeout ?? durationFromMs(row.leaseMs),
    heartbeatTimeout: options.heartbeatTimeout,
    heartbeatDetails: decodePayload(row.heartbeatDetails),
    traceContext: row.traceContext ?? {},
  };
}

/** WorkerService: the worker protocol (docs/worker-protocol.md) on top of the engine. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { WorkerService, WorkflowTaskFailedCause, type ActivityTaskSchema, type Failure, type ServiceHandlers } from "@dex/proto";
import {
  activityOptions,
  completeActivityTask,
  failActivityTask,
  heartbeatActivityTask,
  pollActivityTasks,
  type PolledActivityTask,
} from "../engine/activity-tasks.js";
import type { Engine } from "../engine/context.js";
import { decodePayload } from "../engine/events.js";
import { QueueType } from "../engine/model.js";
import { requireQueue, taskLeaseEnded } from "../engine/task-queues.js";
import type { Limits } from "../engine/limits.js";
import {
  durationField,
  enumField,
  failureField,
  intInRange,
  invalid,
  payloadField,
  queueName,
  requireString,
} from "../engine/validation.js";
import { completeWorkflowTaskGrouped } from "../engine/workflow-task-completions.js";
import { failWorkflowTask, pollWorkflowTasks } from "../engine/workflow-tasks.js";
import { pollDeadline } from "./common.js";
import { decodeActivityTaskToken, decodeWorkflowTaskToken, encodeActivityTaskToken, encodeWorkflowTaskToken } from "./task-token.js";

const KNOWN_CAUSES = Object.values(WorkflowTaskFailedCause).filter((v): v is number => typeof v === "number");

function requireFailure(failure: Failure | undefined, limits: Limits): Failure {
  if (!failure) throw invalid("failure is required: say what went wrong (at least failure.message)");
  return failureField("failure", failure, limits)!;
}

export function workerHandlers(engine: Engine): ServiceHandlers<typeof WorkerService> {
  return {
    async pollWorkflowTasks(req, context) {
      const queue = queueName("task_queue", req.taskQueue);
      const workerId = requireString("worker_id", req.workerId);
      const maxTasks = req.maxTasks === 0 ? 1 : intInRange("max_tasks", req.maxTasks, 0, 100);
      const waitUntil = pollDeadline("max_wait", req.maxWait, context, engine.maxPollWaitMs);
      await requireQueue(engine, QueueType.WORKFLOW, queue, "task_queue");
      const tasks = await pollWorkflowTasks(engine, { queue, maxTasks, workerId, waitUntil }, context.signal);
      return {
        tasks: tasks.map((task) => ({
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
        })),
      };
    },

    async completeWorkflowTask(req) {
      const ref = decodeWorkflowTaskToken(req.taskToken);
      const { historyLength } = await completeWorkflowTaskGrouped(engine, ref, req.commands);
      taskLeaseEnded(engine, QueueType.WORKFLOW, ref.queue);
      return { historyLength: BigInt(historyLength) };
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
      const queue = queueName("task_queue", req.taskQueue);
      const workerId = requireString("worker_id", req.workerId);
      const maxTasks = req.maxTasks === 0 ? 1 : intInRange("max_tasks", req.maxTasks, 0, 100);
      const waitUntil = pollDeadline("max_wait", req.maxWait, context, engine.maxPollWaitMs);
      await requireQueue(engine, QueueType.ACTIVITY, queue, "task_queue");
      const tasks = await pollActivityTasks(engine, { queue, maxTasks, workerId, waitUntil }, context.signal);
      return { tasks: tasks.map(activityTask) };
    },

    async completeActivityTask(req) {
      const ref = decodeActivityTaskToken(req.taskToken);
      await completeActivityTask(engine, ref, payloadField("result", req.result, engine.limits));
      taskLeaseEnded(engine, QueueType.ACTIVITY, ref.queue);
      return {};
    },

    async failActivityTask(req) {
      const ref = decodeActivityTaskToken(req.taskToken);
      const failure = requireFailure(req.failure, engine.limits);
      const delayMs = durationField("next_retry_delay", req.nextRetryDelay, { allowZero: true });
      const outcome = await failActivityTask(engine, ref, failure, delayMs);
      taskLeaseEnded(engine, QueueType.ACTIVITY, ref.queue);
      return outcome.willRetry
        ? { willRetry: true, nextAttemptTime: timestampFromDate(outcome.nextAttemptAt) }
        : { willRetry: false };
    },

    async heartbeatActivityTask(req) {
      const ref = decodeActivityTaskToken(req.taskToken);
      const result = await heartbeatActivityTask(engine, ref, payloadField("details", req.details, engine.limits));
      return { cancelRequested: result.cancelRequested, leaseDeadline: timestampFromDate(result.leaseDeadline) };
    },
  };
}

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
  };
}

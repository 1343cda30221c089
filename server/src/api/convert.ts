/** proto <-> domain mapping shared by the handlers. */
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  InstanceIdConflictPolicy,
  InstanceIdReusePolicy,
  RunStatus as ProtoRunStatus,
  TaskQueueType,
  type RunInfoSchema,
} from "@dex/proto";
import { ConflictPolicy, ReusePolicy } from "../engine/start.js";
import { QueueType, RunStatus } from "../engine/model.js";
import type { RunRecord } from "../store/runs.js";

const STATUS_TO_PROTO: Record<RunStatus, ProtoRunStatus> = {
  CREATED: ProtoRunStatus.CREATED,
  RUNNING: ProtoRunStatus.RUNNING,
  COMPLETED: ProtoRunStatus.COMPLETED,
  FAILED: ProtoRunStatus.FAILED,
  CANCELLED: ProtoRunStatus.CANCELLED,
  TERMINATED: ProtoRunStatus.TERMINATED,
  CONTINUED_AS_NEW: ProtoRunStatus.CONTINUED_AS_NEW,
  TIMED_OUT: ProtoRunStatus.TIMED_OUT,
};

const STATUS_FROM_PROTO = new Map<number, RunStatus>(
  (Object.entries(STATUS_TO_PROTO) as [RunStatus, ProtoRunStatus][]).map(([domain, proto]) => [proto, domain]),
);

export function statusToProto(status: string): ProtoRunStatus {
  return STATUS_TO_PROTO[status as RunStatus] ?? ProtoRunStatus.UNSPECIFIED;
}

/** undefined for UNSPECIFIED ("any status" in a filter); null for an unknown number. */
export function statusFromProto(status: number): RunStatus | undefined | null {
  if (status === ProtoRunStatus.UNSPECIFIED) return undefined;
  return STATUS_FROM_PROTO.get(status) ?? null;
}

export function queueTypeToProto(type: string): TaskQueueType {
  return type === QueueType.WORKFLOW ? TaskQueueType.WORKFLOW : TaskQueueType.ACTIVITY;
}

/** undefined for UNSPECIFIED, null for an unknown number. */
export function queueTypeFromProto(type: number): QueueType | undefined | null {
  if (type === TaskQueueType.UNSPECIFIED) return undefined;
  if (type === TaskQueueType.WORKFLOW) return QueueType.WORKFLOW;
  if (type === TaskQueueType.ACTIVITY) return QueueType.ACTIVITY;
  return null;
}

export function conflictPolicyFromProto(value: number): ConflictPolicy | null {
  switch (value) {
    case InstanceIdConflictPolicy.UNSPECIFIED:
    case InstanceIdConflictPolicy.FAIL:
      return ConflictPolicy.FAIL;
    case InstanceIdConflictPolicy.USE_EXISTING:
      return ConflictPolicy.USE_EXISTING;
    default:
      return null;
  }
}

export function reusePolicyFromProto(value: number): ReusePolicy | null {
  switch (value) {
    case InstanceIdReusePolicy.UNSPECIFIED:
    case InstanceIdReusePolicy.ALLOW:
      return ReusePolicy.ALLOW;
    case InstanceIdReusePolicy.ALLOW_IF_FAILED:
      return ReusePolicy.ALLOW_IF_FAILED;
    case InstanceIdReusePolicy.REJECT:
      return ReusePolicy.REJECT;
    default:
      return null;
  }
}

export function ts(date: Date | null | undefined): Timestamp | undefined {
  return date ? timestampFromDate(date) : undefined;
}

export function runInfo(run: RunRecord): MessageInitShape<typeof RunInfoSchema> {
  return {
    runId: run.id,
    instanceId: run.instanceId,
    workflowName: run.workflowName,
    taskQueue: run.taskQueue,
    status: statusToProto(run.status),
    priority: run.priority,
    labels: run.labels,
    customStatus: run.customStatus ?? "",
    createTime: ts(run.createdAt),
    startTime: ts(run.startedAt),
    endTime: ts(run.endedAt),
    historyLength: BigInt(run.historyLength),
    parentRunId: run.parentRunId ?? "",
    concurrencyKey: run.concurrencyKey ?? "",
    runTimeout: run.runTimeoutMs === null ? undefined : durationFromMs(run.runTimeoutMs),
    workflowTaskTimeout: run.workflowTaskTimeoutMs === null ? undefined : durationFromMs(run.workflowTaskTimeoutMs),
    runDeadline: ts(run.runDeadline),
  };
}

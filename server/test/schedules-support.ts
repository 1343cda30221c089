/** Test support for schedules: a ScheduleService client on a harness and readers of what a schedule started. */
import { createServiceClient, ScheduleOverlapPolicy, ScheduleService, type ServiceClient } from "@dex/proto";
import type { Harness } from "./helpers.js";

export type ScheduleClient = ServiceClient<typeof ScheduleService>;

export function scheduleClient(h: Harness): ScheduleClient {
  return createServiceClient(ScheduleService, h.channel);
}

/** A schedule of workflow "wf" on queue "default" firing every `everyMs`, overlap policy `policy`. */
export function everyMs(everyMs: number, policy = ScheduleOverlapPolicy.ALLOW_ALL, extra: { catchupWindowMs?: number } = {}) {
  return {
    spec: { intervals: [{ every: { seconds: BigInt(Math.floor(everyMs / 1000)), nanos: (everyMs % 1000) * 1e6 } }] },
    action: { workflowName: "wf", taskQueue: "default" },
    policies: {
      overlapPolicy: policy,
      ...(extra.catchupWindowMs === undefined ? {} : { catchupWindow: { seconds: BigInt(Math.floor(extra.catchupWindowMs / 1000)) } }),
    },
  };
}

/** A schedule that never comes due during a test (yearly): fired only by TriggerSchedule and BackfillSchedule. */
export function triggeredOnly(policy: ScheduleOverlapPolicy) {
  return {
    spec: { cronExpressions: ["0 0 1 1 *"], startTime: { seconds: 4_000_000_000n } },
    action: { workflowName: "wf", taskQueue: "default" },
    policies: { overlapPolicy: policy },
  };
}

export interface ScheduledRun {
  id: string;
  instanceId: string;
  status: string;
  /** The nominal time from the instance id, epoch ms. */
  nominalMs: number;
}

/** The runs of a schedule, read from the database, by nominal time. */
export async function scheduledRuns(h: Harness, scheduleId: string): Promise<ScheduledRun[]> {
  const rows = await h.sql<{ id: string; instance_id: string; status: string }[]>`
    select id, instance_id, status from dex.runs where instance_id like ${`${scheduleId}-%`} order by instance_id, id`;
  return rows.map((r) => ({
    id: r.id,
    instanceId: r.instance_id,
    status: r.status,
    nominalMs: Date.parse(r.instance_id.slice(scheduleId.length + 1)),
  }));
}

/** Reads for DescribeRun: the run's pending workflow task and activities (drizzle, not hot). */
import { asc, eq, sql as dsql } from "drizzle-orm";
import type { Drizzle } from "./runs.js";
import { activityTasks, workflowTasks } from "./schema.js";

export type PendingWorkflowTaskRecord = typeof workflowTasks.$inferSelect & { now: Date };
export type PendingActivityRecord = typeof activityTasks.$inferSelect & { now: Date };

export async function pendingWorkflowTask(db: Drizzle, runId: string): Promise<PendingWorkflowTaskRecord | undefined> {
  const [row] = await db
    .select({ task: workflowTasks, now: dsql<Date>`now()`.mapWith((v: string | Date) => new Date(v)) })
    .from(workflowTasks)
    .where(eq(workflowTasks.runId, runId))
    .limit(1);
  return row ? { ...row.task, now: row.now } : undefined;
}

export async function pendingActivities(db: Drizzle, runId: string): Promise<PendingActivityRecord[]> {
  const rows = await db
    .select({ task: activityTasks, now: dsql<Date>`now()`.mapWith((v: string | Date) => new Date(v)) })
    .from(activityTasks)
    .where(eq(activityTasks.runId, runId))
    .orderBy(asc(activityTasks.seq));
  return rows.map((row) => ({ ...row.task, now: row.now }));
}

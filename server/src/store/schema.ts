/**
 * drizzle-orm mirror of migrations/*.sql, used for the queries that are
 * not on the hot path (describe, list, queue admin). The migration is the
 * source of truth: a column added there is added here in the same change.
 * Hot-path statements (claim, complete, append) are hand-written SQL in the
 * sibling files, each with a note on its locking.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  customType,
  integer,
  jsonb,
  pgSchema,
  primaryKey,
  smallint,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";

/** bytea as Node Buffers (postgres.js returns Buffers for bytea). */
export const bytea = customType<{ data: Uint8Array; driverData: Buffer }>({
  dataType: () => "bytea",
  toDriver: (value) => Buffer.from(value.buffer, value.byteOffset, value.byteLength),
});

export const dex = pgSchema("dex");

const tz = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

export const taskQueues = dex.table(
  "task_queues",
  {
    id: bigint("id", { mode: "number" }).generatedAlwaysAsIdentity(),
    type: text("type").$type<"workflow" | "activity">().notNull(),
    name: text("name").notNull(),
    capacity: integer("capacity").notNull().default(0),
    status: text("status").$type<"active" | "paused">().notNull().default("active"),
    partitionName: text("partition_name").notNull(),
    createdAt: tz("created_at").notNull().defaultNow(),
    updatedAt: tz("updated_at").notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.type, t.name] })],
);

export const runs = dex.table("runs", {
  id: uuid("id").primaryKey(),
  instanceId: text("instance_id").notNull(),
  workflowName: text("workflow_name").notNull(),
  taskQueue: text("task_queue").notNull(),
  status: text("status").notNull(),
  priority: smallint("priority").notNull().default(50),
  labels: jsonb("labels").$type<Record<string, string>>().notNull().default(sql`'{}'::jsonb`),
  customStatus: text("custom_status"),
  concurrencyKey: text("concurrency_key"),
  concurrencyLimit: integer("concurrency_limit"),
  /** Waiting in line for a slot of concurrency_key: CREATED without a workflow task (migration 0004). */
  concurrencyWaiting: boolean("concurrency_waiting").notNull().default(false),
  requestId: text("request_id"),
  parentRunId: uuid("parent_run_id"),
  parentSeq: integer("parent_seq"),
  parentClosePolicy: text("parent_close_policy").$type<"cancel" | "abandon">(),
  continuedFromRunId: uuid("continued_from_run_id"),
  continuedAsRunId: uuid("continued_as_run_id"),
  input: bytea("input"),
  result: bytea("result"),
  failure: bytea("failure"),
  historyLength: integer("history_length").notNull().default(0),
  historySize: bigint("history_size", { mode: "number" }).notNull().default(0),
  stickyWorkerId: text("sticky_worker_id"),
  cancelRequestedAt: tz("cancel_requested_at"),
  cancelReason: text("cancel_reason"),
  createdAt: tz("created_at").notNull().defaultNow(),
  startedAt: tz("started_at"),
  endedAt: tz("ended_at"),
});

export const historyEvents = dex.table(
  "history_events",
  {
    runId: uuid("run_id").notNull(),
    sequence: integer("sequence").notNull(),
    kind: text("kind").notNull(),
    event: bytea("event").notNull(),
    dedupKey: text("dedup_key"),
    createdAt: tz("created_at").notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.runId, t.sequence] })],
);

export const inbox = dex.table("inbox", {
  id: bigint("id", { mode: "number" }).generatedAlwaysAsIdentity().primaryKey(),
  runId: uuid("run_id").notNull(),
  visibleAt: tz("visible_at").notNull().defaultNow(),
  kind: text("kind").notNull(),
  event: bytea("event").notNull(),
  dedupKey: text("dedup_key"),
  createdAt: tz("created_at").notNull().defaultNow(),
});

export const workflowTasks = dex.table(
  "workflow_tasks",
  {
    queueName: text("queue_name").notNull(),
    runId: uuid("run_id").notNull(),
    priority: smallint("priority").notNull(),
    visibleAt: tz("visible_at").notNull().defaultNow(),
    createdAt: tz("created_at").notNull().defaultNow(),
    leasedUntil: tz("leased_until"),
    leaseId: uuid("lease_id"),
    lockVersion: integer("lock_version").notNull().default(0),
    attempt: integer("attempt").notNull().default(0),
    workerId: text("worker_id"),
    taskTime: tz("task_time"),
    inboxIds: bigint("inbox_ids", { mode: "number" }).array(),
    lastFailure: bytea("last_failure"),
  },
  (t) => [primaryKey({ columns: [t.queueName, t.runId] })],
);

export const activityTasks = dex.table(
  "activity_tasks",
  {
    queueName: text("queue_name").notNull(),
    runId: uuid("run_id").notNull(),
    seq: integer("seq").notNull(),
    activityName: text("activity_name").notNull(),
    instanceId: text("instance_id").notNull(),
    workflowName: text("workflow_name").notNull(),
    workflowQueue: text("workflow_queue").notNull(),
    priority: smallint("priority").notNull(),
    input: bytea("input"),
    options: bytea("options").notNull(),
    leaseMs: bigint("lease_ms", { mode: "number" }).notNull(),
    scheduledAt: tz("scheduled_at").notNull().defaultNow(),
    scheduleToCloseDeadline: tz("schedule_to_close_deadline"),
    visibleAt: tz("visible_at").notNull().defaultNow(),
    leasedUntil: tz("leased_until"),
    leaseId: uuid("lease_id"),
    lockVersion: integer("lock_version").notNull().default(0),
    attempt: integer("attempt").notNull().default(0),
    workerId: text("worker_id"),
    heartbeatDetails: bytea("heartbeat_details"),
    lastHeartbeatAt: tz("last_heartbeat_at"),
    lastFailure: bytea("last_failure"),
    cancelRequested: boolean("cancel_requested").notNull().default(false),
    startToCloseMs: bigint("start_to_close_ms", { mode: "number" }),
    attemptDeadline: tz("attempt_deadline"),
  },
  (t) => [primaryKey({ columns: [t.queueName, t.runId, t.seq] })],
);

export const timers = dex.table(
  "timers",
  {
    runId: uuid("run_id").notNull(),
    seq: integer("seq").notNull(),
    kind: text("kind").$type<"timer" | "event_wait">().notNull(),
    fireAt: tz("fire_at").notNull(),
    eventId: text("event_id"),
    workflowQueue: text("workflow_queue").notNull(),
    priority: smallint("priority").notNull(),
    event: bytea("event").notNull(),
    createdAt: tz("created_at").notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.runId, t.seq] })],
);

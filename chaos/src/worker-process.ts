/**
 * A worker process of the chaos suite: one SDK workflow worker or activity
 * worker, configured by the CHAOS_WORKER environment variable (JSON, see
 * WorkerConfig). The chaos process SIGKILLs it at random moments; SIGTERM is
 * the orderly end (the SDK's graceful shutdown). It also exits when its stdin
 * closes, so it never outlives the chaos process.
 */
import postgres from "postgres";
import { createActivityWorker, createConsoleLogger, createWorkflowWorker } from "@dex/sdk";
import type { WorkerConfig } from "./processes.js";
import { createActivities, workflows } from "./workload.js";

const config = JSON.parse(process.env.CHAOS_WORKER ?? "null") as WorkerConfig | null;
if (!config) throw new Error("CHAOS_WORKER is not set: this process is started by the chaos suite");

const identity = `chaos-${config.kind}-${process.pid}`;
const logger = createConsoleLogger({ level: "info", prefix: `[${identity}]` });
const sql = postgres(config.databaseUrl, { max: 4, onnotice: () => {}, connection: { application_name: identity } });
const workflowWorker = () =>
  createWorkflowWorker({ address: config.address, taskQueue: config.taskQueue, workflows, maxConcurrentTasks: config.concurrency, identity, logger });
const activityWorker = () =>
  createActivityWorker({ address: config.address, taskQueue: config.taskQueue, activities: createActivities(sql, identity), maxConcurrentActivities: config.concurrency, identity, logger });
// A colocated process runs both; the workflow worker then takes its activities eagerly (in its completions' answers).
const workers =
  config.kind === "workflow" ? [workflowWorker()] : config.kind === "activity" ? [activityWorker()] : [activityWorker(), workflowWorker()];

process.stdin.on("end", () => process.exit(3));
process.stdin.resume();
const done = Promise.all(workers.map((w) => w.run()));
process.stdout.write("chaos worker ready\n");
await done;
await sql.end({ timeout: 2 });
process.exit(0);

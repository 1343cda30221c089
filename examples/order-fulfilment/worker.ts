/**
 * Runs the example's workers against a dex server (default 127.0.0.1:7460, or
 * $DEX_ADDRESS): a workflow worker on the `default` workflow queue and an
 * activity worker on the `default` activity queue. Ctrl-C stops both
 * gracefully.
 */
import { createActivityWorker, createWorkflowWorker, DEFAULT_ADDRESS } from "@dex/sdk";
import { activities } from "./activities.js";
import { workflows } from "./workflows.js";

const address = process.env.DEX_ADDRESS ?? DEFAULT_ADDRESS;
const workflowWorker = createWorkflowWorker({ address, taskQueue: "default", workflows });
const activityWorker = createActivityWorker({ address, taskQueue: "default", activities });

process.stdout.write(`order fulfilment workers polling the default queues on ${address}\n`);
await Promise.all([workflowWorker.run(), activityWorker.run()]);

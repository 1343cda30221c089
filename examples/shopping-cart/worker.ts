/**
 * Runs the shopping cart's workers against a dex server (default
 * 127.0.0.1:7460, or $DEX_ADDRESS): `node dist/shopping-cart/worker.js`.
 * Ctrl-C (or SIGTERM) stops both gracefully.
 */
import { createActivityWorker, createWorkflowWorker, DEFAULT_ADDRESS } from "@dex/sdk";
import { activities } from "./activities.js";
import { workflows } from "./workflows.js";

const address = process.env.DEX_ADDRESS ?? DEFAULT_ADDRESS;
const workflowWorker = createWorkflowWorker({ address, taskQueue: "default", workflows });
const activityWorker = createActivityWorker({ address, taskQueue: "default", activities });

process.stdout.write(`shopping cart workers polling the default queues on ${address}\n`);
await Promise.all([workflowWorker.run(), activityWorker.run()]);

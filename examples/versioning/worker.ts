/**
 * Runs one version of the example's workflow (and its activities) against a
 * dex server (default 127.0.0.1:7460, or $DEX_ADDRESS):
 * `node dist/versioning/worker.js v2`. Restarting it with the next version is
 * a deploy. Ctrl-C (or SIGTERM) stops both workers gracefully.
 */
import { createActivityWorker, createWorkflowWorker, DEFAULT_ADDRESS } from "@dex/sdk";
import { activities } from "./activities.js";
import { isVersionName, versions } from "./versions.js";

const version = process.argv[2];
if (!isVersionName(version)) {
  process.stderr.write(`usage: worker.js <version>, one of ${Object.keys(versions).join(", ")} (got ${version ?? "none"})\n`);
  process.exit(2);
}
const address = process.env.DEX_ADDRESS ?? DEFAULT_ADDRESS;
const workflowWorker = createWorkflowWorker({ address, taskQueue: "default", workflows: versions[version] });
const activityWorker = createActivityWorker({ address, taskQueue: "default", activities });

process.stdout.write(`versioning workers (fulfilOrder ${version}) polling the default queues on ${address}\n`);
await Promise.all([workflowWorker.run(), activityWorker.run()]);

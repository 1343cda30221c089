// A worker process for tests/e2e/workflow-replay.test.ts: node worker.mjs <address> <workflow module>.
import { pathToFileURL } from "node:url";
import { createActivityWorker, createWorkflowWorker } from "@dex/sdk";

const [address, modulePath] = process.argv.slice(2);
const { workflows } = await import(pathToFileURL(modulePath).href);
const quiet = { debug() {}, info() {}, warn() {}, error: console.error };
const workers = [
  createWorkflowWorker({ address, taskQueue: "default", workflows, logger: quiet }),
  createActivityWorker({ address, taskQueue: "default", activities: { reserve: async (id) => `res-${id}`, check: async () => true }, logger: quiet }),
];
process.on("SIGTERM", () => void Promise.all(workers.map((w) => w.shutdown())).then(() => process.exit(0)));
process.stdout.write("workers ready\n");
await Promise.all(workers.map((w) => w.run()));

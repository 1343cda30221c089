/**
 * Scenario 4's producer on DBOS: a DBOSClient, DBOS's way to enqueue
 * workflows from a process that is not a DBOS application. It never calls
 * DBOS.launch, so nothing in it dequeues: the backlog builds up with no
 * consumer, as dex's does with no worker polling. The runs are enqueued one
 * call each, 200 at a time, like dex's starts (the bench's dex client).
 *
 * Same protocol as dbos-runner.ts: BENCH_RUNNER (JSON: url, sizes), "runner
 * ready", then {type: "go"} answered with {type: "result", figures, notes}.
 * The system tables must exist already (`dbos schema`, run by the bench).
 */
import { DBOSClient } from "@dbos-inc/dbos-sdk";
import type { Sizes } from "../options.js";
import { backlogStartFigures } from "../comparable-figures.js";
import { pool } from "../stats.js";
import { DBOS_APP, DBOS_BACKLOG_QUEUE, DBOS_BACKLOG_QUEUE_OPTIONS, DBOS_BACKLOG_WORKFLOW } from "./dbos-app.js";

const config = JSON.parse(process.env.BENCH_RUNNER ?? "null") as { url: string; sizes: Sizes } | null;
if (!config) throw new Error("BENCH_RUNNER is not set: this process is started by the bench");

const client = await DBOSClient.create({ systemDatabaseUrl: config.url, applicationName: DBOS_APP });
// The queue exists (with its flow control) before anything is put on it, as dex's task queue does.
await client.registerQueue(DBOS_BACKLOG_QUEUE, DBOS_BACKLOG_QUEUE_OPTIONS);

async function run(): Promise<void> {
  const runs = config!.sizes.backlog;
  const t0 = performance.now();
  await pool(runs, 200, async (i) => {
    await client.enqueue<(x: number) => Promise<number>>({ queueName: DBOS_BACKLOG_QUEUE, workflowName: DBOS_BACKLOG_WORKFLOW, workflowID: `bl-${i}` }, i);
  });
  const seconds = (performance.now() - t0) / 1000;
  process.send?.({
    type: "result",
    figures: backlogStartFigures(runs, seconds),
    notes: [`${runs} DBOSClient.enqueue calls, 200 at a time, ${seconds.toFixed(1)} s, no DBOS process consuming`],
  });
}

process.on("message", (m: { type?: string }) => {
  if (m?.type !== "go") return;
  run().catch((err: unknown) => process.send?.({ type: "error", message: err instanceof Error ? (err.stack ?? err.message) : String(err) }));
});
process.on("SIGTERM", () => void client.destroy().finally(() => process.exit(0)));
process.stdin.on("end", () => process.exit(3));
process.stdin.resume();
process.stdout.write("runner ready\n");

/**
 * A pg-boss process of the bench: raw job throughput, the same number of jobs
 * as scenario 1 has activities. Jobs are sent one by one (`inFlight` sends at
 * a time) while the workers in this process complete them. Same protocol as
 * dbos-runner.ts (BENCH_RUNNER, "runner ready", go, result).
 *
 * pg-boss workers poll: each work() loop fetches a batch, runs the handler and
 * waits out the rest of its polling interval (0.5 s, the minimum) before the
 * next fetch, so throughput is loops x batch size / interval at most: 8 loops
 * of 100 jobs allow 1,600 jobs/s, more than this machine reaches.
 */
import PgBoss from "pg-boss";
import type { Sizes } from "../options.js";
import { round } from "../meter.js";
import { figure } from "../scenario.js";
import { pool } from "../stats.js";

const config = JSON.parse(process.env.BENCH_RUNNER ?? "null") as { url: string; scenario: string; sizes: Sizes } | null;
if (!config) throw new Error("BENCH_RUNNER is not set: this process is started by the bench");
const LOOPS = 8;
const BATCH = 100;
const QUEUE = "bench";

const boss = new PgBoss({ connectionString: config.url, max: 20 });
boss.on("error", (err) => process.stderr.write(`pg-boss error: ${String(err)}\n`));
await boss.start();
await boss.createQueue(QUEUE);

async function run(): Promise<void> {
  const jobs = 3 * config!.sizes.workflows;
  let done = 0;
  let allDone!: () => void;
  const finished = new Promise<void>((resolve) => (allDone = resolve));
  const t0 = performance.now();
  for (let i = 0; i < LOOPS; i++) {
    await boss.work(QUEUE, { batchSize: BATCH, pollingIntervalSeconds: 0.5 }, async (batch) => {
      done += batch.length;
      if (done >= jobs) allDone();
    });
  }
  await pool(jobs, config!.sizes.inFlight, async (i) => {
    await boss.send(QUEUE, { i });
  });
  const sendSeconds = (performance.now() - t0) / 1000;
  await finished;
  const seconds = (performance.now() - t0) / 1000;
  process.send?.({
    type: "result",
    figures: [figure("activitiesPerSec", "jobs/s", round(jobs / seconds, 1), "/s"), figure("sendsPerSec", "sends/s", round(jobs / sendSeconds, 0), "/s")],
    notes: [`${jobs} jobs, ${config!.sizes.inFlight} sends in flight, ${LOOPS} work() loops of batch ${BATCH}, polling 0.5 s; ${seconds.toFixed(1)} s`],
  });
}

process.on("message", (m: { type?: string }) => {
  if (m?.type === "go") run().catch((err: unknown) => process.send?.({ type: "error", message: String(err) }));
});
process.on("SIGTERM", () => void boss.stop({ graceful: false, wait: true }).finally(() => process.exit(0)));
process.stdin.on("end", () => process.exit(3));
process.stdin.resume();
process.stdout.write("runner ready\n");

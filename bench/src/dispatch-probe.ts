/**
 * The dispatch probe of a backlog drain (scenario 4, and the retention sweep's drain): four lanes
 * beside the real worker, each claiming one workflow task at a time from BACKLOG_QUEUE and timing
 * the claim against the depth seen when it asked, so "dispatch p99 while deep" has enough claims
 * even in the quick profile's short deep phase. Each claimed run is completed with its input as the
 * result, as backlogWorkflow would; a 50 ms pause between claims keeps the probe a small share.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { DexEnv } from "./systems/dex.js";
import { BACKLOG_QUEUE } from "./systems/dex-workload.js";

export interface ProbeClaim {
  ms: number;
  /** The queue's depth when the claim was asked for. */
  depth: number;
}

/** Starts the probe; `depth` reads the depth the caller last measured. `stop` ends it and returns every claim. */
export function startDispatchProbe(dex: DexEnv, depth: () => number): { stop(): Promise<ProbeClaim[]> } {
  let draining = true;
  const claims: ProbeClaim[] = [];
  const lanes = Promise.all(
    Array.from({ length: 4 }, async () => {
      while (draining) {
        const depthAtPoll = depth();
        const p0 = performance.now();
        const response = await dex.client.raw.worker.pollWorkflowTasks({ taskQueue: BACKLOG_QUEUE, maxTasks: 1, workerId: "bench-probe", maxWait: durationFromMs(1_000) });
        const ms = performance.now() - p0;
        for (const task of response.tasks) {
          claims.push({ ms, depth: depthAtPoll });
          const started = task.history.find((e) => e.attributes.case === "runStarted");
          const input = started?.attributes.case === "runStarted" ? started.attributes.value.input : undefined;
          await dex.client.raw.worker.completeWorkflowTask({ taskToken: task.taskToken, commands: [{ command: { case: "completeRun", value: { result: input } } }] });
        }
        await sleep(50);
      }
    }),
  );
  return {
    async stop() {
      draining = false;
      await lanes;
      return claims;
    },
  };
}

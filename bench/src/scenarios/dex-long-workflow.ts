/**
 * Scenario 3 on dex: one workflow of N sequential activities. Step times come
 * from history (the created_at of each ActivityCompleted event, written by the
 * server in the transaction that recorded it); bytes to the workflow worker
 * from the byte-counting relay in its process (dex-worker.ts), set against the
 * run's final history size (dex.runs.history_size: serialized events).
 */
import { longWorkflowFigures } from "../comparable-figures.js";
import { round } from "../meter.js";
import { figure, type ScenarioContext, type ScenarioResult } from "../scenario.js";
import { percentile } from "../stats.js";
import { startDex } from "../systems/dex.js";
import { ACTIVITY_QUEUES, WORKFLOW_QUEUE } from "../systems/dex-workload.js";

export async function dexLongWorkflow(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { longSteps: steps, longWindow: window, longWorkers } = ctx.sizes;
  const dex = await startDex(ctx.pg, ctx.group, "long-workflow", { cpuProfDir: ctx.cpuProfDir });
  try {
    // With several workflow worker processes, each counts its own bytes; the figure is their sum.
    const [wfs] = await Promise.all([
      Promise.all(
        Array.from({ length: longWorkers }, (_, i) =>
          dex.startWorkers(`wf${i}`, [{ kind: "workflow", queue: WORKFLOW_QUEUE, concurrency: 10 }], true),
        ),
      ),
      dex.startWorkers("act", [{ kind: "activity", queue: ACTIVITY_QUEUES[0], concurrency: 10 }]),
    ]);
    const t0 = performance.now();
    const handle = await dex.client.start("longWorkflow", { instanceId: "long-1", input: { steps }, taskQueue: WORKFLOW_QUEUE });
    await handle.result();
    const totalMs = performance.now() - t0;
    const runId = handle.runId!;
    const stats = await Promise.all(wfs.map((wf) => wf.request<{ bytesFromServer: number }>({ type: "stats" })));
    const bytesFromServer = stats.reduce((sum, s) => sum + s.bytesFromServer, 0);
    const times = await dex.sql<{ kind: string; ms: number }[]>`
      select kind, extract(epoch from created_at) * 1000 as ms from dex.history_events
      where run_id = ${runId} order by sequence`;
    const start = Number(times[0]!.ms);
    const completed = times.filter((e: { kind: string; ms: number }) => /activity.?completed/i.test(e.kind)).map((e: { kind: string; ms: number }) => Number(e.ms));
    if (completed.length !== steps) throw new Error(`expected ${steps} activity completions in history, found ${completed.length} (kinds: ${[...new Set(times.map((e: { kind: string; ms: number }) => e.kind))].join(", ")})`);
    // Where a step's time goes: scheduled -> completed is the activity leg (dispatch, run, report), completed -> next
    // scheduled the workflow leg (workflow task dispatch, replay, completion).
    const scheduled = times.filter((e: { kind: string; ms: number }) => /activity.?scheduled/i.test(e.kind)).map((e: { kind: string; ms: number }) => Number(e.ms));
    const activityLeg = completed.map((c, i) => c - scheduled[i]!);
    const workflowLeg = completed.slice(0, -1).map((c, i) => scheduled[i + 1]! - c);
    const firstMs = completed[window - 1]! - start;
    const lastMs = completed[steps - 1]! - completed[steps - window - 1]!;
    const [run] = await dex.sql<{ history_size: string; history_length: number; event_bytes: string }[]>`
      select history_size::text, history_length,
             (select sum(octet_length(event))::text from dex.history_events where run_id = ${runId}) as event_bytes
      from dex.runs where id = ${runId}`;
    const historyBytes = Number(run!.history_size);
    ctx.log(`dex long workflow (${longWorkers} workflow worker processes): ${steps} steps in ${(totalMs / 1000).toFixed(1)} s, ${bytesFromServer} bytes to the worker, history ${historyBytes} bytes`);
    return {
      figures: [
        ...longWorkflowFigures(steps, window, { total: totalMs, first: firstMs, last: lastMs }),
        figure("activityLegP50", "step: activity leg p50", round(percentile(activityLeg, 50), 1), "ms"),
        figure("workflowLegP50", "step: workflow leg p50", round(percentile(workflowLeg, 50), 1), "ms"),
        figure("bytesToWorker", "bytes to the workflow worker (wire)", bytesFromServer, "B"),
        figure("historyBytes", "final history size", historyBytes, "B"),
        figure("bytesOverHistory", "bytes to worker / history", round(bytesFromServer / historyBytes, 2), "x"),
      ],
      usage: {},
      notes: [
        `history: ${run!.history_length} events, history_size ${historyBytes} B, sum of stored event bytes ${run!.event_bytes} B`,
        `workflow worker processes: ${longWorkers}`,
        "bytes to worker = everything the server sent on the workflow workers' connections (HTTP/2 frames: poll responses, completion responses, settings), counted by a TCP relay in each worker process",
      ],
    };
  } finally {
    await dex.close();
  }
}

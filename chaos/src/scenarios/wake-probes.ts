/**
 * Hand-overs between servers under faults: raw workflow-task pollers park on
 * some servers (a 20 s wait, the server's longest) on a queue nothing else
 * uses, and a probe run is started through a different server; its task must
 * reach a poller. The time from the start's send to the task's arrival is
 * recorded for the report; no bound is asserted on it (a loaded machine makes
 * any bound flaky, and either the NOTIFY or the fallback tick delivers the
 * task: server/test proves the wake with the tick off). The pollers end each
 * probe run at once (a CompleteRun command).
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { DexError } from "@dex/proto";
import { encodePayload, type Client } from "@dex/sdk";
import type { ScenarioContext } from "../environment.js";
import type { ServerSlot } from "../processes.js";
import { startRequest } from "../workload.js";
import { pause } from "./common.js";

export const PROBE_QUEUE = "probe";
/**
 * How long a probe's task may take to arrive before it counts as lost: long, so that only a task
 * that never comes fails the check (the fallback tick alone delivers within seconds, even loaded).
 */
const PROBE_DEADLINE_MS = 60_000;

export interface ProbeResult {
  instanceId: string;
  runId: string;
  /** From sending StartWorkflow to the task reaching a poller on another server. */
  ms: number;
  server: string;
}

interface Poller {
  server: string;
  /** When the poll in flight was sent; undefined between polls and while backing off after an error. */
  pollingSince: number | undefined;
}

export class WakeProbes {
  readonly results: ProbeResult[] = [];
  /** Probes whose task did not arrive within PROBE_DEADLINE_MS. */
  readonly lost: string[] = [];
  pollErrors = 0;
  /** Probes whose start had to be retried: not timed. */
  retried = 0;
  private readonly pollers: Poller[] = [];
  private readonly arrived = new Map<string, { at: number; server: string }>();
  private readonly abort = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private count = 0;

  constructor(
    private readonly ctx: ScenarioContext,
    /** Where probe runs are started. */
    private readonly starter: Client,
  ) {}

  /** One parked poller on each of `servers`. */
  start(servers: ServerSlot[]): void {
    for (const server of servers) {
      const poller: Poller = { server: server.name, pollingSince: undefined };
      this.pollers.push(poller);
      this.loops.push(this.poll(this.ctx.client(server.address), poller));
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.all(this.loops);
  }

  /**
   * One probe. It waits first until every poller's poll has been in flight
   * for 250 ms: a poll that has not failed by then has reached its server
   * (after a server restart the channel takes a moment to reconnect).
   */
  async probe(): Promise<ProbeResult | undefined> {
    const ready = Date.now() + 15_000;
    while (!this.pollers.every((p) => p.pollingSince !== undefined && Date.now() - p.pollingSince >= 250)) {
      if (Date.now() > ready) break; // probe anyway; a poller that is away makes no difference to the others
      await pause(20);
    }
    const instanceId = `probe-${++this.count}`;
    const request = { ...startRequest("chaosProbe", instanceId, {}), taskQueue: PROBE_QUEUE };
    const first = Date.now();
    let sent = first;
    let attempts = 0;
    let runId: string | undefined;
    while (!runId) {
      try {
        attempts++;
        sent = Date.now();
        runId = (await this.starter.raw.client.startWorkflow(request, { deadline: 10_000 })).runId;
      } catch (err) {
        if (Date.now() - first > 30_000) throw new Error(`probe ${instanceId} could not be started: ${DexError.from(err).message}`);
        await pause(200);
      }
    }
    this.runIds.set(instanceId, runId);
    const deadline = Date.now() + PROBE_DEADLINE_MS;
    while (!this.arrived.has(runId) && Date.now() < deadline) await pause(5);
    const got = this.arrived.get(runId);
    if (!got) {
      this.lost.push(`${instanceId} (run ${runId}): no poller received its task within ${PROBE_DEADLINE_MS / 1000} s`);
      return undefined;
    }
    // A start that needed a retry (its server was still reconnecting) times the retry only; an
    // earlier try may have landed, so its task may even have arrived first: not a measurement.
    if (attempts > 1) return void this.retried++;
    const result = { instanceId, runId, ms: got.at - sent, server: got.server };
    this.results.push(result);
    return result;
  }

  /** Run id of every probe started (all must end COMPLETED). */
  readonly runIds = new Map<string, string>();

  private async poll(client: Client, poller: Poller): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      poller.pollingSince = Date.now();
      try {
        const { tasks } = await client.raw.worker.pollWorkflowTasks(
          { taskQueue: PROBE_QUEUE, maxTasks: 1, workerId: `probe-${poller.server}`, maxWait: durationFromMs(20_000) },
          { deadline: 30_000, signal },
        );
        poller.pollingSince = undefined;
        for (const task of tasks) {
          if (!this.arrived.has(task.runId)) this.arrived.set(task.runId, { at: Date.now(), server: poller.server });
          await this.complete(client, task.taskToken);
        }
      } catch {
        poller.pollingSince = undefined;
        if (signal.aborted) return;
        this.pollErrors++;
        await pause(200);
      }
    }
  }

  /** Ends the probe run; retried until acknowledged or refused (its lease ran out: another poller gets it again). */
  private async complete(client: Client, taskToken: Uint8Array): Promise<void> {
    const until = Date.now() + 20_000;
    for (;;) {
      try {
        await client.raw.worker.completeWorkflowTask(
          { taskToken, commands: [{ command: { case: "completeRun", value: { result: encodePayload("probed") } } }] },
          { deadline: 10_000 },
        );
        return;
      } catch (err) {
        if (DexError.from(err).code === "NOT_FOUND" || Date.now() > until) return;
        await pause(200);
      }
    }
  }
}

/** p-th percentile (0..100) of `values`, nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

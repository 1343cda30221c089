/**
 * Raw activity pollers in the chaos process (no SDK) that serve `chaosStep`
 * alongside the SDK worker processes and remember every completion the
 * server acknowledged. The SDK has no hook that reports an acknowledged
 * completion, so this is how a scenario learns what the server promised:
 * afterwards, each acknowledged completion must be the one in history (same
 * attempt). A completion whose answer was an error is ambiguous (it may
 * have committed) and is retried with the same token until it is
 * acknowledged or refused NOT_FOUND; only an OK counts.
 */
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { DexError, type ActivityTask } from "@dex/proto";
import { decodePayload, encodePayload, type Client } from "@dex/sdk";
import { check, type ScenarioContext } from "../environment.js";
import type { Check } from "../invariants.js";
import { recordExecution, type StepInput, type StepResult } from "../workload.js";
import { completedAttempts, pause } from "./common.js";

interface Acked {
  key: string;
  attempt: number;
  /** When the acknowledgement arrived (ms). */
  at: number;
}

export class AckedPollers {
  readonly acked: Acked[] = [];
  /** Completions answered with an error, then NOT_FOUND on a retry: may or may not have committed. */
  ambiguous = 0;
  /** Attempts given up because their lease ran out before the execution could be recorded or completed. */
  abandoned = 0;
  pollErrors = 0;
  private stopped = false;
  private readonly loops: Promise<void>[] = [];

  constructor(private readonly ctx: ScenarioContext) {}

  /** `count` pollers on `queue`, each on its own connection, spread over `addresses`. */
  start(addresses: string[], count: number, queue = "default"): void {
    for (let i = 0; i < count; i++) this.loops.push(this.poll(this.ctx.client(addresses[i % addresses.length]!), `acked-poller-${i + 1}`, queue));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  private async poll(client: Client, name: string, queue: string): Promise<void> {
    const running = new Set<Promise<void>>();
    while (!this.stopped) {
      let tasks: ActivityTask[];
      try {
        const response = await client.raw.worker.pollActivityTasks(
          { taskQueue: queue, maxTasks: 2 - running.size, workerId: name, maxWait: durationFromMs(1_000) },
          { deadline: 10_000 },
        );
        tasks = response.tasks;
      } catch {
        this.pollErrors++;
        await pause(200);
        continue;
      }
      for (const task of tasks) {
        const handling = this.handle(client, task, name).finally(() => running.delete(handling));
        running.add(handling);
      }
      // At most 2 attempts in hand per poller, like a worker with 2 slots.
      while (running.size >= 2) await Promise.race(running);
    }
    await Promise.all(running);
  }

  private async handle(client: Client, task: ActivityTask, name: string): Promise<void> {
    const leaseEnd = task.leaseDeadline ? timestampMs(task.leaseDeadline) : Date.now() + 4_000;
    // Record first (as chaosStep does), retrying through the outage: no record, no completion.
    for (;;) {
      try {
        await recordExecution(this.ctx.sql, { runId: task.runId, seq: task.seq, activityName: task.activityName, attempt: task.attempt }, name);
        break;
      } catch {
        if (Date.now() > leaseEnd) return void this.abandoned++;
        await pause(100);
      }
    }
    const input = task.input ? (decodePayload(task.input) as StepInput) : { n: 0, delayMs: 0 };
    await pause(this.ctx.rng.int(0, Math.max(0, input.delayMs)));
    const result: StepResult = { n: input.n, attempt: task.attempt, worker: name };
    let failedOnce = false;
    for (;;) {
      try {
        await client.raw.worker.completeActivityTask({ taskToken: task.taskToken, result: encodePayload(result) }, { deadline: 10_000 });
        this.acked.push({ key: `${task.runId}:${task.seq}`, attempt: task.attempt, at: Date.now() });
        return;
      } catch (err) {
        const code = DexError.from(err).code;
        if (code === "NOT_FOUND") {
          if (failedOnce) this.ambiguous++;
          return; // lease ran out and the attempt went to someone else, or our earlier try committed
        }
        failedOnce = true;
        if (Date.now() > leaseEnd + 5_000) return void this.abandoned++;
        await pause(200);
      }
    }
  }

  /** Every acknowledged completion is in history, as the activity_completed of that attempt. */
  async check(): Promise<Check> {
    const recorded = await completedAttempts(this.ctx);
    const violations: string[] = [];
    for (const a of this.acked) {
      const attempt = recorded.get(a.key);
      if (attempt !== a.attempt) violations.push(`${a.key}: attempt ${a.attempt}'s completion was acknowledged; history records ${attempt === undefined ? "none" : `attempt ${attempt}`}`);
    }
    return check(
      "every completion a worker saw acknowledged is in history",
      violations.length === 0 && this.acked.length > 0,
      `${this.acked.length} completions acknowledged to raw pollers (${this.ambiguous} ambiguous not counted), ${recorded.size} activity completions in history`,
      this.acked.length === 0 ? ["no completion was acknowledged: the check proved nothing", ...violations] : violations,
    );
  }

  /** When the first completion after `since` was acknowledged (ms after `since`), if one was. */
  firstAckAfter(since: number): number | undefined {
    const next = this.acked.find((a) => a.at >= since);
    return next && next.at - since;
  }

  summary(): string {
    return `raw pollers: ${this.acked.length} completions acknowledged, ${this.ambiguous} ambiguous (error, then NOT_FOUND), ${this.abandoned} attempts given up after their lease, ${this.pollErrors} failed polls`;
  }
}

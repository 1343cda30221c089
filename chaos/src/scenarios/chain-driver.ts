/**
 * The client side of the `chains` scenario: per chain, the named events
 * (some ids sent twice), the updates (some with two callers of one id) and,
 * for some chains, the cancel, each call retried through outages on the other
 * server with the same id, always through the instance id, so that a retry
 * after a continue-as-new reaches the chain's next run. Every call's outcome
 * is recorded for the checker (invariants-chains.ts), which holds the
 * database to it.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { DexError } from "@dex/proto";
import { decodePayload, encodePayload, type Client } from "@dex/sdk";
import { APPLY_UPDATE, DONE_EVENT, ITEM_EVENT, type ApplyArgs, type ApplyResult, type ItemPayload } from "../chain-workload.js";
import type { ChainRecord } from "../invariants-chains.js";
import type { Rng } from "../rng.js";
import { pause } from "./common.js";

export interface DrivePlan {
  items: number;
  itemsPerRun: number;
  /** The item index after which the cancel goes out (cancelled chains only). */
  cancelAfter?: number;
  gapMs: [number, number];
  /** Share of items sent without waiting for the answer (several then arrive in one workflow task). */
  burstChance: number;
  /** Share of item ids sent a second time, a while later. */
  duplicateChance: number;
  /** Share of items followed by an extra update (besides the ones raced against each continue-as-new). */
  updateChance: number;
  /** Share of updates with a second caller of the same id. */
  secondCallerChance: number;
}

/** Call statistics over all chains. */
export interface CallStats {
  calls: number;
  /** Attempts that failed in transit and were retried (a server down). */
  retried: number;
  /** Answers INTERNAL, retried (the server should say UNAVAILABLE for a lost connection). */
  internal: number;
}

/** Codes after which the call may not have reached a server, or was cut off: retry with the same id. */
const TRANSIENT = new Set(["UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "INTERNAL", "RESOURCE_EXHAUSTED"]);

export class ChainDriver {
  readonly stats: CallStats = { calls: 0, retried: 0, internal: 0 };
  /** Calls start on the servers in turn, so every server takes requests and a kill of either cuts calls off. */
  private turn = 0;

  constructor(
    /** One client per server: each retry goes to the next one. */
    private readonly clients: Client[],
    private readonly deadline: number,
  ) {}

  /** `call` until it answers something other than a transient error; the last error after the deadline. */
  private async retrying<T>(call: (client: Client) => Promise<T>): Promise<{ ok: T } | { error: DexError; transient: boolean; retried: boolean }> {
    const first = this.turn++;
    for (let attempt = 0; ; attempt++) {
      this.stats.calls++;
      try {
        return { ok: await call(this.clients[(first + attempt) % this.clients.length]!) };
      } catch (err) {
        const error = DexError.from(err);
        const transient = TRANSIENT.has(error.code);
        if (error.code === "INTERNAL") this.stats.internal++;
        if (!transient || Date.now() > this.deadline) return { error, transient, retried: attempt > 0 };
        this.stats.retried++;
        await pause(150);
      }
    }
  }

  /** Sends an item event (recorded in `chain.events`) or, with `name`, another event; true once a server answered OK. */
  async sendEvent(chain: ChainRecord, id: string, name = ITEM_EVENT): Promise<boolean> {
    const record = chain.events.get(id) ?? { id, acked: false };
    if (name === ITEM_EVENT) chain.events.set(id, record);
    const payload = encodePayload({ id } satisfies ItemPayload);
    const outcome = await this.retrying((c) =>
      c.raw.client.sendEvent({ run: { target: { case: "instanceId", value: chain.instanceId } }, eventId: id, eventName: name, payload }, { deadline: 10_000 }),
    );
    if ("ok" in outcome) record.acked = true;
    else if (!record.acked) record.refused = `${outcome.error.code}: ${outcome.error.message}`;
    return record.acked;
  }

  /** One caller of update `id`: UpdateRun through the instance id until it has an outcome. */
  async update(chain: ChainRecord, id: string): Promise<void> {
    const record = chain.updates.get(id) ?? { id, answers: [] };
    chain.updates.set(id, record);
    const args = encodePayload({ updateId: id } satisfies ApplyArgs);
    for (;;) {
      const outcome = await this.retrying((c) =>
        c.raw.client.updateRun(
          { run: { target: { case: "instanceId", value: chain.instanceId } }, name: APPLY_UPDATE, args, updateId: id, wait: durationFromMs(5_000) },
          { deadline: 10_000 },
        ),
      );
      if (!("ok" in outcome)) {
        const { code, message } = outcome.error;
        record.answers.push(outcome.transient ? { kind: "unanswered", lastError: `${code}: ${message}` } : { kind: "error", code, message });
        return;
      }
      const r = outcome.ok;
      switch (r.outcome.case) {
        case "result":
          record.answers.push({ kind: "result", runId: r.runId, value: decodePayload(r.outcome.value) as ApplyResult });
          return;
        case "failure":
        case "rejection":
          record.answers.push({ kind: r.outcome.case, runId: r.runId, type: r.outcome.value.type, message: r.outcome.value.message });
          return;
      }
      if (Date.now() > this.deadline) {
        record.answers.push({ kind: "unanswered", lastError: `still running at the driver's deadline (run ${r.runId})` });
        return;
      }
    }
  }

  async cancel(chain: ChainRecord): Promise<void> {
    const outcome = await this.retrying((c) =>
      c.raw.client.cancelRun({ run: { target: { case: "instanceId", value: chain.instanceId } }, reason: "chaos: cancel the chain" }, { deadline: 10_000 }),
    );
    // A retry that finds the chain ended: an earlier attempt landed and the chain has ended of it
    // (the checker holds the chain to CANCELLED either way).
    if ("ok" in outcome || (outcome.retried && outcome.error.code === "FAILED_PRECONDITION")) chain.cancelAcked = true;
    else chain.cancelError = `${outcome.error.code}: ${outcome.error.message}`;
  }

  /**
   * Drives one chain: items one by one (some in bursts, some ids again later), updates raced
   * against each continue-as-new (one sent with the item that ends a run's share, one just after),
   * extra updates at random, the cancel raced against a continue-as-new too; `done` once every
   * caller has its answer (uncancelled chains).
   */
  async drive(chain: ChainRecord, plan: DrivePlan, rng: Rng): Promise<void> {
    const background: Promise<void>[] = [];
    let updates = 0;
    // Every random choice is drawn here, in order, so a seed repeats what the driver does.
    const later = (ms: number, fn: () => Promise<void>) => background.push(pause(ms).then(fn));
    const newUpdate = (delayMs: number) => {
      const id = `${chain.instanceId}-update-${updates++}`;
      later(delayMs, () => this.update(chain, id));
      if (rng.chance(plan.secondCallerChance)) later(delayMs + rng.int(0, 1_500), () => this.update(chain, id));
    };
    for (let i = 0; i < plan.items; i++) {
      const id = `${chain.instanceId}-item-${i}`;
      // The item that completes a run's share makes it continue as new in the task that delivers it:
      // an update (and the cancel) sent with it lands in that task's block, or while it runs (unseen,
      // the server's to carry), or in the next run.
      const endsRun = (i + 1) % plan.itemsPerRun === 0;
      if (endsRun) newUpdate(rng.int(0, 30));
      if (chain.cancel && i === plan.cancelAfter) later(rng.int(0, 50), () => this.cancel(chain));
      const send = this.sendEvent(chain, id).then(() => undefined);
      if (rng.chance(plan.burstChance)) background.push(send);
      else await send;
      if (endsRun) newUpdate(rng.int(0, 200));
      if (rng.chance(plan.duplicateChance)) later(rng.int(0, 3_000), () => this.sendEvent(chain, id).then(() => undefined));
      if (rng.chance(plan.updateChance)) newUpdate(rng.int(0, 500));
      await pause(rng.int(...plan.gapMs));
    }
    await Promise.all(background);
    if (!chain.cancel) chain.doneAcked = await this.sendEvent(chain, `${chain.instanceId}-done`, DONE_EVENT);
  }
}

/**
 * Cluster-wide capacity, checked from what actually ran: every execution of
 * a capped queue's activities is recorded with its start and end
 * (chaos.executions.started_at / ended_at, written by the activity itself),
 * and at no instant may more than `capacity` of them overlap, whichever
 * server handed them out.
 *
 * Why this is sound: an execution starts after its claim committed and ends
 * (its row updated) before its completion is sent, so it lies within its
 * lease; if the servers never lease more than `capacity` tasks at once, the
 * executions cannot overlap more either. An execution whose worker was
 * SIGKILLed has no end; it ended when the worker died (`killedAt`, this
 * host's clock, which is the database's: one machine). One with no end and no
 * kill is counted until its lease ran out.
 */
import { check, type ScenarioContext } from "../environment.js";
import type { Check } from "../invariants.js";

export async function capacityCheck(ctx: ScenarioContext, options: { activityName: string; capacity: number; leaseMs: number; killedAt: Map<string, number> }): Promise<{ check: Check; line: string }> {
  const rows = await ctx.sql<{ id: string; worker: string; start_us: string; end_us: string | null }[]>`
    select id::text, worker, (extract(epoch from started_at) * 1000000)::bigint::text as start_us,
           (extract(epoch from ended_at) * 1000000)::bigint::text as end_us
    from chaos.executions where activity_name = ${options.activityName}`;
  let unended = 0;
  let byKill = 0;
  // +1 at a start, -1 at an end; at the same instant ends go first (touching is not overlapping).
  const events: Array<{ us: bigint; delta: 1 | -1; id: string }> = [];
  for (const r of rows) {
    const start = BigInt(r.start_us);
    let end: bigint;
    if (r.end_us !== null) end = BigInt(r.end_us);
    else {
      const killed = options.killedAt.get(r.worker);
      if (killed !== undefined && BigInt(killed) * 1000n >= start) (end = BigInt(killed) * 1000n), byKill++;
      else (end = start + BigInt(options.leaseMs) * 1000n), unended++;
    }
    events.push({ us: start, delta: 1, id: r.id }, { us: end, delta: -1, id: r.id });
  }
  events.sort((a, b) => (a.us < b.us ? -1 : a.us > b.us ? 1 : a.delta - b.delta));
  let running = 0;
  let max = 0;
  let atCapacityUs = 0n;
  let last = 0n;
  const violations: string[] = [];
  for (const e of events) {
    if (running >= options.capacity) atCapacityUs += e.us - last;
    last = e.us;
    running += e.delta;
    max = Math.max(max, running);
    if (e.delta === 1 && running > options.capacity) {
      violations.push(`${running} executions at once at ${new Date(Number(e.us / 1000n)).toISOString()} (execution id ${e.id} started then)`);
    }
  }
  const line = `capacity ${options.capacity}: ${rows.length} executions, at most ${max} at once, ${(Number(atCapacityUs) / 1e6).toFixed(1)} s spent at capacity; ${byKill} ended by a worker kill, ${unended} without a recorded end (counted to their lease)`;
  return {
    line,
    check: check(
      `capacity holds cluster-wide (never more than ${options.capacity} executions of a capped queue at once)`,
      violations.length === 0 && max === options.capacity,
      line,
      max < options.capacity ? [`the queue never reached its capacity (at most ${max} at once): the check proved nothing`] : violations,
    ),
  };
}

/**
 * 200 concurrent starts of one instance id, over several connections, in
 * five variations: distinct request ids (exactly one run, everyone else
 * ALREADY_EXISTS); one request id (every call answers the same run);
 * USE_EXISTING (every call answers the same run, one of them `started`); a
 * second storm after the first run ended (exactly one new run); and
 * SendEventWithStart with distinct event ids (one run, every event delivered
 * once). Each run holds itself open longer than a storm takes.
 */
import { DexError, InstanceIdConflictPolicy } from "@dex/proto";
import { encodePayload, type Client } from "@dex/sdk";
import { fromBinary } from "@bufbuild/protobuf";
import { HistoryEventSchema } from "@dex/proto";
import { check, type Scenario, type ScenarioContext } from "../environment.js";
import type { Check, RunStatus } from "../invariants.js";
import { startRequest, waitForRunsToEnd } from "../workload.js";
import { startCluster } from "./common.js";

interface Answer {
  runId?: string;
  started?: boolean;
  duplicate?: boolean;
  code?: string;
}

export const instanceIdStorm: Scenario = {
  name: "instance-id-storm",
  summary: "200 concurrent starts of one instance id: exactly one run; one request id: one run",
  async run(ctx) {
    const p = ctx.profile.storm;
    const cluster = await startCluster(ctx, { workflow: 1, activity: 0 });
    const clients = Array.from({ length: p.channels }, () => ctx.client(cluster.server.address));
    const input = { holdMs: p.holdMs };
    const checks: Check[] = [];
    const did: string[] = [];
    const runs = new Map<string, RunStatus>();

    // Fires `p.starts` calls at once, round-robin over the connections.
    const storm = async (label: string, call: (client: Client, i: number) => Promise<Answer>) => {
      const began = Date.now();
      const answers = await Promise.all(
        Array.from({ length: p.starts }, (_, i) => call(clients[i % clients.length]!, i).catch((err: unknown): Answer => ({ code: DexError.from(err).code }))),
      );
      const ms = Date.now() - began;
      // A storm slower than the run's hold could legitimately start a second run: say so instead of misjudging.
      if (ms > p.holdMs) checks.push(check(`${label}: the storm finished while the run was open`, false, `took ${ms} ms, hold is ${p.holdMs} ms (inconclusive)`));
      const ids = new Set(answers.flatMap((a) => (a.runId ? [a.runId] : [])));
      for (const id of ids) runs.set(id, "COMPLETED");
      const codes = countBy(answers.map((a) => a.code ?? "OK"));
      const line = `${label}: ${p.starts} calls in ${ms} ms -> ${[...codes].map(([c, k]) => `${k} ${c}`).join(", ")}; ${ids.size} distinct run id(s)`;
      ctx.log(line);
      did.push(line);
      return { answers, ids, codes };
    };
    const start = (instanceId: string, extra: Parameters<typeof startRequest>[3]) => async (client: Client) => {
      const r = await client.raw.client.startWorkflow(startRequest("stormWorkflow", instanceId, input, extra));
      return { runId: r.runId, started: r.started };
    };
    const runsOf = async (instanceId: string) =>
      ctx.sql<{ id: string; status: string }[]>`select id, status from dex.runs where instance_id = ${instanceId}`;

    // 1. Distinct request ids, conflict policy FAIL.
    const a = await storm("distinct request ids", (c, i) => start("storm-a", { requestId: `a-${i}` })(c));
    checks.push(
      check("distinct request ids: exactly one start wins, the rest ALREADY_EXISTS", a.codes.get("OK") === 1 && a.codes.get("ALREADY_EXISTS") === p.starts - 1 && (await runsOf("storm-a")).length === 1,
        `${a.codes.get("OK") ?? 0} OK, ${a.codes.get("ALREADY_EXISTS") ?? 0} ALREADY_EXISTS, ${(await runsOf("storm-a")).length} run(s) in dex.runs`),
    );
    // 2. One request id: every call is the same start.
    const b = await storm("one request id", (c) => start("storm-b", { requestId: "b-same" })(c));
    checks.push(
      check("one request id: every call answers the same run, started once", b.codes.get("OK") === p.starts && b.ids.size === 1 && b.answers.filter((x) => x.started).length === 1 && (await runsOf("storm-b")).length === 1,
        `${b.codes.get("OK") ?? 0} OK, ${b.ids.size} run id(s), ${b.answers.filter((x) => x.started).length} started = true`),
    );
    // 3. USE_EXISTING: everyone gets the open run.
    const c3 = await storm("use-existing", (c, i) => start("storm-c", { requestId: `c-${i}`, conflictPolicy: InstanceIdConflictPolicy.USE_EXISTING })(c));
    checks.push(
      check("USE_EXISTING: every call answers the same run, started once", c3.codes.get("OK") === p.starts && c3.ids.size === 1 && c3.answers.filter((x) => x.started).length === 1,
        `${c3.codes.get("OK") ?? 0} OK, ${c3.ids.size} run id(s), ${c3.answers.filter((x) => x.started).length} started = true`),
    );
    // 4. SendEventWithStart, distinct event ids: one run, every event delivered once.
    const e = await storm("send-event-with-start", async (client, i) => {
      const r = await client.raw.client.sendEventWithStart({ start: startRequest("stormWorkflow", "storm-e", input, { requestId: `e-${i}` }), eventId: `ev-${i}`, payload: encodePayload(i) });
      return { runId: r.runId, started: r.started, duplicate: r.duplicate };
    });
    checks.push(
      check("send-event-with-start: one run, one start, no duplicates", e.codes.get("OK") === p.starts && e.ids.size === 1 && e.answers.filter((x) => x.started).length === 1 && !e.answers.some((x) => x.duplicate),
        `${e.codes.get("OK") ?? 0} OK, ${e.ids.size} run id(s), ${e.answers.filter((x) => x.started).length} started, ${e.answers.filter((x) => x.duplicate).length} duplicate`),
    );
    // 5. A second storm on storm-a once its run has ended (reuse allowed): exactly one new run.
    const settledA = await waitForRunsToEnd(ctx.sql, [...a.ids], p.holdMs + 30_000);
    if (settledA.open.length > 0) throw new Error(`storm-a's run did not end: ${JSON.stringify(settledA.open)}`);
    const a2 = await storm("after the run ended", (c, i) => start("storm-a", { requestId: `a2-${i}` })(c));
    const aRuns = await runsOf("storm-a");
    checks.push(
      check("after the run ended: exactly one new run, the rest ALREADY_EXISTS", a2.codes.get("OK") === 1 && aRuns.length === 2,
        `${a2.codes.get("OK") ?? 0} OK, ${a2.codes.get("ALREADY_EXISTS") ?? 0} ALREADY_EXISTS, ${aRuns.length} runs of storm-a`),
    );

    const settled = await waitForRunsToEnd(ctx.sql, [...runs.keys()], ctx.profile.settleTimeoutMs);
    const events = await deliveredEvents(ctx, [...e.ids][0]);
    checks.push(
      check("send-event-with-start: every event is in history exactly once", events.total === p.starts && events.distinct === p.starts,
        `${events.total} external_event_received events, ${events.distinct} distinct ids, ${p.starts} sent`),
    );
    did.push(`${runs.size} runs in all; ended ${(settled.ms / 1000).toFixed(1)} s after the last storm`);
    return { did, expect: { runs }, checks };
  },
};

async function deliveredEvents(ctx: ScenarioContext, runId: string | undefined): Promise<{ total: number; distinct: number }> {
  if (!runId) return { total: 0, distinct: 0 };
  const rows = await ctx.sql<{ event: Buffer }[]>`
    select event from dex.history_events where run_id = ${runId} and kind = 'external_event_received'`;
  const ids = rows.map((r) => {
    const attributes = fromBinary(HistoryEventSchema, r.event).attributes;
    return attributes.case === "externalEventReceived" ? attributes.value.eventId : "?";
  });
  return { total: ids.length, distinct: new Set(ids).size };
}

function countBy(values: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return counts;
}

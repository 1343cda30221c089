/**
 * `dex workflow query RUN NAME`: calls a query handler of a run's workflow
 * (ClientService.QueryRun, decision 0023); and the built-in `__dex_pending`
 * query that `dex workflow describe` shows.
 */
import type { Command } from "commander";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { DexError } from "@dex/proto";
import type { Client } from "@dex/sdk";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { parseJsonFlag } from "../options.js";
import { decodePayload, encodeJsonPayload } from "../payloads.js";
import { UsageError } from "../errors.js";
import { selector } from "./selector.js";

/** The SDK's built-in query: where the workflow code waits. */
export const PENDING_QUERY = "__dex_pending";
/** How long describe waits for a worker to answer it: describe must stay quick when no worker runs. */
const DESCRIBE_QUERY_TIMEOUT_MS = 2_000;

export function registerQueryCommand(workflow: Command): void {
  withClientFlags(
    workflow
      .command("query <run> <name>")
      .description(`call a query handler of a run's workflow and print its answer (${PENDING_QUERY}: where it waits); writes nothing`)
      .option("--payload <json>", "the handler's argument, as JSON")
      .option("--timeout <seconds>", "how long to wait for a worker's answer, 1 to 60", "10"),
  ).action(async (ref: string, name: string, flags: ClientFlags & { payload?: string; timeout: string }) => {
    const args = parseJsonFlag("--payload", flags.payload);
    const seconds = Number(flags.timeout);
    if (!Number.isFinite(seconds) || seconds < 1 || seconds > 60) throw new UsageError(`--timeout must be 1 to 60 seconds, got "${flags.timeout}"`);
    await withClient(flags, async (client) => {
      const response = await client.raw.client.queryRun({
        run: selector(ref),
        queryName: name,
        args: args === undefined ? undefined : encodeJsonPayload(args),
        timeout: durationFromMs(seconds * 1000),
      });
      const value = decodePayload(response.result);
      process.stdout.write(`${JSON.stringify(value ?? null, null, flags.json ? undefined : 2)}\n`);
    });
  });
}

export interface CodePending {
  activities: Array<{ seq: number; name: string }>;
  timers: Array<{ seq: number }>;
  eventWaits: Array<{ seq: number; eventName: string }>;
  children: Array<{ seq: number; workflowName: string; instanceId: string }>;
  conditions: number;
}

/** The built-in pending query's answer, or why describe could not get it (no worker answered quickly, an older SDK). */
export async function askPending(client: Client, runId: string): Promise<{ pending?: CodePending; notAsked?: string }> {
  try {
    const response = await client.raw.client.queryRun(
      { run: { target: { case: "runId", value: runId } }, queryName: PENDING_QUERY, timeout: durationFromMs(DESCRIBE_QUERY_TIMEOUT_MS) },
      { deadline: DESCRIBE_QUERY_TIMEOUT_MS + 3_000 },
    );
    return { pending: decodePayload(response.result) as CodePending };
  } catch (err) {
    const error = DexError.from(err);
    return { notAsked: `${error.code}: ${error.message}` };
  }
}

export function printPending(answer: { pending?: CodePending; notAsked?: string }): void {
  if (!answer.pending) {
    process.stdout.write(`\nworkflow code: could not ask a worker where it waits (${answer.notAsked})\n`);
    return;
  }
  const p = answer.pending;
  const parts = [
    ...p.activities.map((a) => `activity ${a.name} (seq ${a.seq})`),
    ...p.timers.map((t) => `timer (seq ${t.seq})`),
    ...p.eventWaits.map((w) => `event ${w.eventName} (seq ${w.seq})`),
    ...p.children.map((c) => `child ${c.workflowName} ${c.instanceId} (seq ${c.seq})`),
    ...(p.conditions > 0 ? [`${p.conditions} condition${p.conditions === 1 ? "" : "s"}`] : []),
  ];
  process.stdout.write(`\nworkflow code waits on (asked a worker): ${parts.length ? parts.join(", ") : "nothing"}\n`);
}

/**
 * `dex workflow update <run> <name>`: asks the run's update handler to act and prints its answer
 * (decision 0024). The server answers "still running" after about 20 s; the command asks again with
 * the same update id until the outcome is known, so the handler runs once however long it takes.
 * A rejected or failed update prints one line on stderr and exits 1.
 */
import { randomUUID } from "node:crypto";
import type { Command } from "commander";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { parseJsonFlag } from "../options.js";
import { formatValue, printJson } from "../output.js";
import { decodePayload, encodeJsonPayload, failureLine, failureView } from "../payloads.js";
import { selector } from "./selector.js";

export function registerUpdateCommand(workflow: Command): void {
  withClientFlags(
    workflow
      .command("update <run> <name>")
      .description("ask a run's update handler <name> to act and print its answer (run id, or instance id for its current run)")
      .option("--payload <json>", "the handler's argument as JSON")
      .option("--id <update-id>", "update id; the same id again returns the first answer without running the handler again (default: random)"),
  ).action(async (ref: string, name: string, flags: ClientFlags & { payload?: string; id?: string }) => {
    const args = parseJsonFlag("--payload", flags.payload);
    const updateId = flags.id ?? randomUUID();
    await withClient(flags, async (client) => {
      let run = selector(ref);
      for (;;) {
        const response = await client.raw.client.updateRun({
          run,
          name,
          updateId,
          ...(flags.payload === undefined ? {} : { args: encodeJsonPayload(args) }),
        });
        // Ask the run that took the update again, even if the instance moves on meanwhile.
        run = selector(response.runId);
        const outcome = response.outcome;
        if (outcome.case === "result") {
          const result = decodePayload(outcome.value);
          if (flags.json) printJson({ runId: response.runId, updateId, result });
          else process.stdout.write(`${formatValue(result)}\n`);
          return;
        }
        if (outcome.case === "rejection" || outcome.case === "failure") {
          const what = outcome.case === "rejection" ? "was rejected" : "failed";
          if (flags.json) printJson({ runId: response.runId, updateId, [outcome.case]: failureView(outcome.value) });
          else process.stderr.write(`update ${updateId} ${what} by run ${response.runId}: ${failureLine(failureView(outcome.value))}\n`);
          process.exitCode = 1;
          return;
        }
      }
    });
  });
}

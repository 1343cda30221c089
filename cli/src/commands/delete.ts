/** `dex workflow delete RUN`: an ended run and its history, now (ClientService.DeleteRun, admin keys). */
import type { Command } from "commander";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { UsageError } from "../errors.js";
import { printJson } from "../output.js";
import { runRef } from "../options.js";

export function registerDeleteCommand(workflow: Command): void {
  withClientFlags(
    workflow
      .command("delete <run-id>")
      .description("delete an ended run with its history, as retention would; irreversible (admin key)"),
  ).action(async (ref: string, flags: ClientFlags) => {
    const target = runRef(ref);
    // An instance id names different runs over time: a delete must name exactly one.
    if (!("runId" in target)) throw new UsageError(`delete takes a run id (a UUID), not an instance id: got "${ref}"`);
    await withClient(flags, async (client) => {
      const response = await client.raw.client.deleteRun({ runId: target.runId });
      if (flags.json) printJson({ runId: response.runId, deleted: true, historyEventsDeleted: Number(response.historyEventsDeleted) });
      else process.stdout.write(`deleted run ${response.runId} (${response.historyEventsDeleted} history events)\n`);
    });
  });
}

/** `dex workflow signal | cancel | terminate`: commands that change a run from outside. */
import type { Command } from "commander";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { parseJsonFlag } from "../options.js";
import { printJson } from "../output.js";
import { encodeJsonPayload } from "../payloads.js";
import { selector } from "./selector.js";

export function registerRunControlCommands(workflow: Command): void {
  withClientFlags(
    workflow
      .command("signal <run>")
      .description("send an external event to a run (run id, or instance id for its current run)")
      .requiredOption("--event <event-id>", "event id; sending the same id twice delivers it once")
      .option("--payload <json>", "event payload as JSON"),
  ).action(async (ref: string, flags: ClientFlags & { event: string; payload?: string }) => {
    const payload = parseJsonFlag("--payload", flags.payload);
    await withClient(flags, async (client) => {
      const response = await client.raw.client.sendEvent({
        run: selector(ref),
        eventId: flags.event,
        ...(flags.payload === undefined ? {} : { payload: encodeJsonPayload(payload) }),
      });
      if (flags.json) printJson({ runId: response.runId, eventId: flags.event, duplicate: response.duplicate });
      else if (response.duplicate) process.stdout.write(`run ${response.runId} already received event ${flags.event}; nothing changed\n`);
      else process.stdout.write(`sent event ${flags.event} to run ${response.runId}\n`);
    });
  });

  withClientFlags(
    workflow
      .command("cancel <run>")
      .description("request cancellation: the workflow sees it at its next await and may clean up")
      .option("--reason <text>", "why; recorded in history", ""),
  ).action(async (ref: string, flags: ClientFlags & { reason: string }) => {
    await withClient(flags, async (client) => {
      const response = await client.raw.client.cancelRun({ run: selector(ref), reason: flags.reason });
      if (flags.json) printJson({ runId: response.runId, alreadyRequested: response.alreadyRequested });
      else if (response.alreadyRequested) process.stdout.write(`cancellation of run ${response.runId} was already requested\n`);
      else process.stdout.write(`requested cancellation of run ${response.runId}\n`);
    });
  });

  withClientFlags(
    workflow
      .command("terminate <run>")
      .description("end a run at once as TERMINATED; no workflow code runs, pending tasks and timers are removed")
      .option("--reason <text>", "why; recorded in history", ""),
  ).action(async (ref: string, flags: ClientFlags & { reason: string }) => {
    await withClient(flags, async (client) => {
      const response = await client.raw.client.terminateRun({ run: selector(ref), reason: flags.reason });
      if (flags.json) printJson({ runId: response.runId, status: "TERMINATED" });
      else process.stdout.write(`terminated run ${response.runId}\n`);
    });
  });
}

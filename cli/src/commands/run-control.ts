/** `dex workflow signal | cancel | terminate`: commands that change a run from outside. */
import type { Command } from "commander";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { UsageError } from "../errors.js";
import { parseJsonFlag } from "../options.js";
import { printJson } from "../output.js";
import { encodeJsonPayload } from "../payloads.js";
import { selector } from "./selector.js";

export function registerRunControlCommands(workflow: Command): void {
  withClientFlags(
    workflow
      .command("signal <run>")
      .description("send an external event to a run (run id, or instance id for its current run)")
      .option("--name <name>", "event name: what the workflow waits for; a run receives many events of one name")
      .option("--id <event-id>", "event id (dedup key): the same id twice delivers once; default: a new id each time")
      .option("--event <event-id>", "the form from before names: event id and, without --name, name too")
      .option("--payload <json>", "event payload as JSON"),
  ).action(async (ref: string, flags: ClientFlags & { name?: string; id?: string; event?: string; payload?: string }) => {
    const { eventId, eventName } = signalIdentity(flags);
    const payload = parseJsonFlag("--payload", flags.payload);
    await withClient(flags, async (client) => {
      const response = await client.raw.client.sendEvent({
        run: selector(ref),
        eventId,
        eventName,
        ...(flags.payload === undefined ? {} : { payload: encodeJsonPayload(payload) }),
      });
      const name = eventName || eventId;
      const id = response.eventId || eventId;
      if (flags.json) printJson({ runId: response.runId, eventName: name, eventId: id, duplicate: response.duplicate });
      else if (response.duplicate) process.stdout.write(`run ${response.runId} already received event id ${id} (name ${name}); nothing changed\n`);
      else process.stdout.write(`sent event ${name} (id ${id}) to run ${response.runId}\n`);
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

/** --name and --id, or the older --event (id, and name unless --name is given). */
function signalIdentity(flags: { name?: string; id?: string; event?: string }): { eventId: string; eventName: string } {
  if (flags.event !== undefined && flags.id !== undefined) {
    throw new UsageError("give --id or --event, not both (--event is the older spelling of --id)");
  }
  const eventId = flags.id ?? flags.event ?? "";
  const eventName = flags.name ?? "";
  if (eventId === "" && eventName === "") {
    throw new UsageError("give --name <name> (what the workflow waits for), optionally with --id <event-id>");
  }
  return { eventId, eventName };
}

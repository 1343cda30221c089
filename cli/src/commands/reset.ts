/** `dex workflow reset RUN --to POINT --reason TEXT`: ClientService.ResetRun (docs/decisions/0026-reset.md). */
import { randomUUID } from "node:crypto";
import type { Command } from "commander";
import { ResetPointKind } from "@dex/proto";
import { UsageError } from "../errors.js";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { printJson } from "../output.js";
import { selector } from "./selector.js";

const POINTS = "first-workflow-task, last-workflow-task or event:N (N: a workflow_task_completed marker's sequence, or 1 for the start)";

/** The --to flag as ResetRunRequest fields; a UsageError (one line, exit 1) for anything else. */
export function parseResetPoint(value: string): { to: ResetPointKind; eventSequence: bigint } {
  if (value === "first-workflow-task") return { to: ResetPointKind.FIRST_WORKFLOW_TASK, eventSequence: 0n };
  if (value === "last-workflow-task") return { to: ResetPointKind.LAST_WORKFLOW_TASK, eventSequence: 0n };
  const match = /^event:([1-9][0-9]{0,9})$/.exec(value);
  if (match) return { to: ResetPointKind.EVENT, eventSequence: BigInt(match[1]!) };
  throw new UsageError(`--to must be ${POINTS}; got "${value}"`);
}

export function registerResetCommand(workflow: Command): void {
  withClientFlags(
    workflow
      .command("reset <run>")
      .description(
        "start a new run of the instance that replays this run's history up to a workflow-task boundary and goes on " +
          "from there; an open run ends TERMINATED, external events after the point are re-delivered (admin key)",
      )
      .requiredOption("--to <point>", POINTS)
      .option("--reason <text>", "why; recorded in the old run's history and the new run's describe", "")
      .option("--request-id <id>", "idempotency key: a retry with the same id returns the same new run (default: random)"),
  ).action(async (ref: string, flags: ClientFlags & { to: string; reason: string; requestId?: string }) => {
    const point = parseResetPoint(flags.to);
    await withClient(flags, async (client) => {
      const response = await client.raw.client.resetRun({
        run: selector(ref),
        ...point,
        reason: flags.reason,
        requestId: flags.requestId ?? randomUUID(),
      });
      const view = {
        runId: response.runId,
        created: response.created,
        keptEvents: Number(response.keptEvents),
        redeliveredEvents: response.redeliveredEvents,
      };
      if (flags.json) printJson(view);
      else if (!response.created) process.stdout.write(`run ${ref} was already reset by this request id to run ${response.runId}\n`);
      else {
        process.stdout.write(
          `reset run ${ref} to run ${response.runId} (kept ${view.keptEvents} events, re-delivered ${view.redeliveredEvents} external events)\n`,
        );
      }
    });
  });
}

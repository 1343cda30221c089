/** `dex schedule ...`: schedules through the SDK's client.schedule (dex.v1.ScheduleService). */
import type { Command } from "commander";
import { parseDuration, type OverlapPolicy, type ScheduleDefinition, type ScheduleDescription } from "@dex/sdk";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { UsageError } from "../errors.js";
import { collectLabel, parseIntFlag, parseJsonFlag } from "../options.js";
import { formatTime, printFields, printJson, printTable } from "../output.js";

const OVERLAP_POLICIES: readonly OverlapPolicy[] = ["skip", "buffer-one", "buffer-all", "cancel-other", "terminate-other", "allow-all"];

interface DefinitionFlags {
  workflow: string;
  queue?: string;
  input?: string;
  label?: Record<string, string>;
  priority?: string;
  cron?: string[];
  every?: string;
  offset?: string;
  timeZone?: string;
  start?: string;
  end?: string;
  jitter?: string;
  overlap?: string;
  catchupWindow?: string;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function durationFlag(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseDuration(text);
  } catch {
    throw new UsageError(`${flag} must be a duration like "500ms", "10s", "5m", "2h" or "1d", got "${text}"`);
  }
}

function dateFlag(flag: string, text: string | undefined): Date | undefined {
  if (text === undefined) return undefined;
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw new UsageError(`${flag} must be a date and time like 2026-01-31T09:00:00Z, got "${text}"`);
  return date;
}

function overlapFlag(text: string | undefined): OverlapPolicy | undefined {
  if (text === undefined) return undefined;
  if (!OVERLAP_POLICIES.includes(text as OverlapPolicy)) {
    throw new UsageError(`--overlap must be one of ${OVERLAP_POLICIES.join(", ")}, got "${text}"`);
  }
  return text as OverlapPolicy;
}

function definition(flags: DefinitionFlags): ScheduleDefinition {
  const everyMs = durationFlag("--every", flags.every);
  if (!flags.cron?.length && everyMs === undefined) throw new UsageError(`give --cron "<expression>" or --every <duration> (or both)`);
  if (flags.offset !== undefined && everyMs === undefined) throw new UsageError("--offset needs --every");
  const overlap = overlapFlag(flags.overlap);
  const catchupWindowMs = durationFlag("--catchup-window", flags.catchupWindow);
  const jitterMs = durationFlag("--jitter", flags.jitter);
  const startAt = dateFlag("--start", flags.start);
  const endAt = dateFlag("--end", flags.end);
  return {
    spec: {
      ...(flags.cron?.length ? { cron: flags.cron } : {}),
      ...(everyMs === undefined ? {} : { intervals: [{ everyMs, offsetMs: durationFlag("--offset", flags.offset) ?? 0 }] }),
      ...(flags.timeZone ? { timeZone: flags.timeZone } : {}),
      ...(startAt ? { startAt } : {}),
      ...(endAt ? { endAt } : {}),
      ...(jitterMs === undefined ? {} : { jitterMs }),
    },
    action: {
      workflow: flags.workflow,
      ...(flags.queue ? { taskQueue: flags.queue } : {}),
      input: parseJsonFlag("--input", flags.input),
      labels: flags.label ?? {},
      ...(flags.priority === undefined ? {} : { priority: parseIntFlag("--priority", flags.priority, 0, 100) }),
    },
    ...(overlap ? { overlap } : {}),
    ...(catchupWindowMs === undefined ? {} : { catchupWindowMs }),
  };
}

function withDefinitionFlags(command: Command): Command {
  return withClientFlags(
    command
      .requiredOption("--workflow <name>", "the workflow each firing starts")
      .option("--queue <name>", "workflow task queue (default: default)")
      .option("--input <json>", "the runs' input as JSON")
      .option("--label <key=value>", "label the runs (repeatable)", collectLabel)
      .option("--priority <n>", "priority from 0 to 100")
      .option("--cron <expression>", 'cron expression, 5 fields or 6 with seconds first, e.g. "0 9 * * 1-5" (repeatable)', collect)
      .option("--every <duration>", "fixed interval, e.g. 30s, 5m, 1h")
      .option("--offset <duration>", "shift of the interval from the epoch-aligned times")
      .option("--time-zone <iana>", "time zone of the cron expressions, e.g. Europe/Berlin (default UTC)")
      .option("--start <time>", "no firing before this time (ISO 8601)")
      .option("--end <time>", "no firing after this time (ISO 8601)")
      .option("--jitter <duration>", "start each firing up to this much later (the same delay on every server)")
      .option("--overlap <policy>", `when the previous run is open: ${OVERLAP_POLICIES.join(", ")} (default skip)`)
      .option("--catchup-window <duration>", "how late a firing missed while no server ran may still start (default 60s)"),
  );
}

function printDescription(d: ScheduleDescription): void {
  const time = (date: Date) => formatTime(date) ?? "-";
  printFields([
    ["schedule", d.scheduleId],
    ["paused", d.paused ? "yes" : "no"],
    ["note", d.note || undefined],
    ["next firings", d.nextActionTimes.map(time).join(", ") || "none"],
    ["actions", String(d.actionCount)],
    ["remaining actions", d.remainingActions === undefined ? "unlimited" : String(d.remainingActions)],
    ["buffered", d.bufferedTimes.map(time).join(", ") || undefined],
    ["skipped", `overlap ${d.overlapSkipped}, paused ${d.pausedSkipped}, catch-up window ${d.catchupWindowMissed}`],
  ]);
  if (d.recentActions.length > 0) {
    process.stdout.write("\nrecent actions:\n");
    printTable(["NOMINAL TIME", "STARTED", "KIND", "RUN ID"], d.recentActions.map((a) => [time(a.nominalTime), time(a.actualTime), a.kind, a.runId]));
  }
  if (d.recentSkips.length > 0) {
    process.stdout.write("\nrecent skips:\n");
    printTable(["NOMINAL TIME", "REASON", "COUNT"], d.recentSkips.map((s) => [time(s.nominalTime), s.reason, String(s.count)]));
  }
}

export function registerScheduleCommands(program: Command): void {
  const schedule = program.command("schedule").description("create, inspect, pause, trigger and backfill schedules");

  withDefinitionFlags(schedule.command("create <id>").description("create a schedule that starts a workflow run at each firing"))
    .option("--paused", "create it paused")
    .option("--note <text>", "a note about the pause")
    .option("--limit <n>", "stop after this many scheduled runs")
    .action(async (id: string, flags: ClientFlags & DefinitionFlags & { paused?: boolean; note?: string; limit?: string }) => {
      const d = definition(flags);
      const limit = flags.limit === undefined ? undefined : parseIntFlag("--limit", flags.limit, 0, 1_000_000);
      await withClient(flags, async (client) => {
        await client.schedule.create({ scheduleId: id, ...d, paused: flags.paused ?? false, note: flags.note ?? "", ...(limit === undefined ? {} : { remainingActions: limit }) });
        if (flags.json) printJson({ scheduleId: id, created: true });
        else process.stdout.write(`created schedule ${id}\n`);
      });
    });

  withDefinitionFlags(schedule.command("update <id>").description("replace a schedule's definition; it fires by the new one from now on"))
    .option("--limit <n>", "set the remaining scheduled runs")
    .option("--unlimited", "remove the limit on runs")
    .action(async (id: string, flags: ClientFlags & DefinitionFlags & { limit?: string; unlimited?: boolean }) => {
      if (flags.limit !== undefined && flags.unlimited) throw new UsageError("--limit and --unlimited contradict each other; give one");
      const d = definition(flags);
      const limit = flags.limit === undefined ? undefined : parseIntFlag("--limit", flags.limit, 0, 1_000_000);
      await withClient(flags, async (client) => {
        await client.schedule.getHandle(id).update({ ...d, ...(flags.unlimited ? { remainingActions: null } : limit === undefined ? {} : { remainingActions: limit }) });
        if (flags.json) printJson({ scheduleId: id, updated: true });
        else process.stdout.write(`updated schedule ${id}\n`);
      });
    });

  withClientFlags(schedule.command("describe <id>").description("show a schedule's next firings, recent actions and skipped firings")).action(
    async (id: string, flags: ClientFlags) => {
      await withClient(flags, async (client) => {
        const d = await client.schedule.getHandle(id).describe();
        if (flags.json) printJson({ ...d, raw: undefined });
        else printDescription(d);
      });
    },
  );

  withClientFlags(schedule.command("list").description("list schedules")).action(async (flags: ClientFlags) => {
    await withClient(flags, async (client) => {
      const all: Awaited<ReturnType<typeof client.schedule.list>>["schedules"] = [];
      let pageToken: string | undefined;
      do {
        const page = await client.schedule.list(pageToken ? { pageToken } : {});
        all.push(...page.schedules);
        pageToken = page.nextPageToken;
      } while (pageToken);
      if (flags.json) printJson(all);
      else
        printTable(
          ["ID", "WORKFLOW", "PAUSED", "NEXT FIRING", "ACTIONS"],
          all.map((s) => [s.scheduleId, s.workflowName, s.paused ? "yes" : "no", formatTime(s.nextActionTime) ?? "-", String(s.actionCount)]),
        );
    });
  });

  for (const verb of ["pause", "resume"] as const) {
    withClientFlags(
      schedule
        .command(`${verb} <id>`)
        .description(verb === "pause" ? "pause a schedule (firings while paused are skipped and counted)" : "resume a paused schedule from now")
        .option("--note <text>", `why it is ${verb}d`),
    ).action(async (id: string, flags: ClientFlags & { note?: string }) => {
      await withClient(flags, async (client) => {
        const handle = client.schedule.getHandle(id);
        await (verb === "pause" ? handle.pause(flags.note) : handle.resume(flags.note));
        if (flags.json) printJson({ scheduleId: id, paused: verb === "pause" });
        else process.stdout.write(`schedule ${id} ${verb}d\n`);
      });
    });
  }

  withClientFlags(
    schedule.command("trigger <id>").description("fire a schedule now").option("--overlap <policy>", "overlap policy for this firing"),
  ).action(async (id: string, flags: ClientFlags & { overlap?: string }) => {
    const overlap = overlapFlag(flags.overlap);
    await withClient(flags, async (client) => {
      const outcome = await client.schedule.getHandle(id).trigger(overlap ? { overlap } : {});
      if (flags.json) printJson(outcome);
      else if (outcome.runId) process.stdout.write(`started run ${outcome.runId}\n`);
      else if (outcome.buffered) process.stdout.write(`buffered: starts when the schedule's open run ends\n`);
      else process.stdout.write(`skipped (${outcome.skipReason ?? "overlap"})\n`);
    });
  });

  withClientFlags(
    schedule
      .command("backfill <id>")
      .description("fire every nominal time of a range now (at most 1000)")
      .requiredOption("--start <time>", "first time of the range (ISO 8601, included)")
      .requiredOption("--end <time>", "last time of the range (ISO 8601, included)")
      .option("--overlap <policy>", "overlap policy for these firings"),
  ).action(async (id: string, flags: ClientFlags & { start: string; end: string; overlap?: string }) => {
    const start = dateFlag("--start", flags.start)!;
    const end = dateFlag("--end", flags.end)!;
    const overlap = overlapFlag(flags.overlap);
    await withClient(flags, async (client) => {
      const counts = await client.schedule.getHandle(id).backfill({ start, end, ...(overlap ? { overlap } : {}) });
      if (flags.json) printJson(counts);
      else process.stdout.write(`backfill of ${id}: ${counts.started} started, ${counts.buffered} buffered, ${counts.skipped} skipped\n`);
    });
  });

  withClientFlags(schedule.command("delete <id>").description("delete a schedule (the runs it started are left alone)")).action(
    async (id: string, flags: ClientFlags) => {
      await withClient(flags, async (client) => {
        await client.schedule.getHandle(id).delete();
        if (flags.json) printJson({ scheduleId: id, deleted: true });
        else process.stdout.write(`deleted schedule ${id}\n`);
      });
    },
  );
}

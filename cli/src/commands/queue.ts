import type { Command } from "commander";
import { TaskQueueStatus, TaskQueueType, type TaskQueue } from "@dex/proto";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { UsageError } from "../errors.js";
import { parseIntFlag } from "../options.js";
import { printJson, printTable } from "../output.js";
import { isoTime } from "../payloads.js";
import { formatRetention, parseRetention } from "../retention-flags.js";

function queueType(text: string | undefined): TaskQueueType {
  if (text === undefined) throw new UsageError(`--type is required: "workflow" or "activity"`);
  if (text === "workflow") return TaskQueueType.WORKFLOW;
  if (text === "activity") return TaskQueueType.ACTIVITY;
  throw new UsageError(`--type must be "workflow" or "activity", got "${text}"`);
}

/** Whole seconds of a google.protobuf.Duration; undefined when unset. */
function durationSeconds(duration: { seconds: bigint } | undefined): number | undefined {
  return duration === undefined ? undefined : Number(duration.seconds);
}

export function queueView(queue: TaskQueue) {
  const age = queue.oldestPendingAge;
  const effective = durationSeconds(queue.effectiveRetention);
  return {
    name: queue.name,
    type: queue.type === TaskQueueType.WORKFLOW ? "workflow" : "activity",
    status: queue.status === TaskQueueStatus.PAUSED ? "paused" : "active",
    capacity: queue.capacity,
    depth: Number(queue.depth),
    inFlight: Number(queue.inFlight),
    oldestPendingAgeMs: age ? Number(age.seconds) * 1000 + Math.floor(age.nanos / 1e6) : 0,
    /** When a worker last polled the queue, on any server (up to ~5 s late); absent: never. */
    ...(queue.lastPollTime ? { lastPollTime: isoTime(queue.lastPollTime)! } : {}),
    /** Workflow queues: seconds ended runs are kept (0: forever), and whether that is the server's default. */
    ...(effective === undefined
      ? {}
      : { retentionSeconds: effective, retentionIsServerDefault: queue.retention === undefined }),
  };
}

/** "4s ago", "3m ago", "2h ago", "5d ago" or "never": a glance at whether workers are there. */
function lastPollText(q: ReturnType<typeof queueView>, now: number = Date.now()): string {
  if (q.lastPollTime === undefined) return "never";
  const seconds = Math.max(0, Math.round((now - Date.parse(q.lastPollTime)) / 1000));
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86_400)}d ago`;
}

function retentionText(q: ReturnType<typeof queueView>): string {
  if (q.retentionSeconds === undefined) return "-";
  return `${formatRetention(q.retentionSeconds)}${q.retentionIsServerDefault ? " (server default)" : ""}`;
}

const RETENTION_HELP = "workflow queues: how long ended runs are kept, e.g. 30d, 12h; 0 keeps them forever";

export function registerQueueCommands(program: Command): void {
  const queue = program.command("queue").description("create and inspect task queues");

  withClientFlags(
    queue
      .command("create <name>")
      .description("create a task queue (and its Postgres partition)")
      .requiredOption("--type <type>", "workflow or activity")
      .option("--capacity <n>", "maximum tasks leased at once across the cluster (0 = unlimited)", "0")
      .option("--retention <duration>", `${RETENTION_HELP} (default: the server's --default-retention)`),
  ).action(async (name: string, flags: ClientFlags & { type: string; capacity: string; retention?: string }) => {
    const type = queueType(flags.type);
    const capacity = parseIntFlag("--capacity", flags.capacity, 0, 1_000_000_000);
    const retention = flags.retention === undefined ? undefined : retentionDuration(flags.retention);
    await withClient(flags, async (client) => {
      const response = await client.raw.queues.createTaskQueue({ name, type, capacity, retention });
      if (flags.json) printJson(queueView(response.queue!));
      else process.stdout.write(`created ${flags.type} queue ${name}\n`);
    });
  });

  withClientFlags(queue.command("list").description("list task queues with depth and in-flight counts")).action(
    async (flags: ClientFlags) => {
      await withClient(flags, async (client) => {
        const response = await client.raw.queues.listTaskQueues({});
        const views = response.queues.map(queueView);
        if (flags.json) printJson(views);
        else
          printTable(
            ["NAME", "TYPE", "STATUS", "CAPACITY", "DEPTH", "IN FLIGHT", "OLDEST PENDING", "LAST POLL", "RETENTION"],
            views.map((q) => [
              q.name,
              q.type,
              q.status,
              q.capacity === 0 ? "unlimited" : String(q.capacity),
              String(q.depth),
              String(q.inFlight),
              q.oldestPendingAgeMs ? `${(q.oldestPendingAgeMs / 1000).toFixed(1)}s` : "-",
              lastPollText(q),
              retentionText(q),
            ]),
          );
      });
    },
  );

  withClientFlags(
    queue
      .command("describe <name>")
      .description("show one task queue: status, capacity, load and retention")
      .requiredOption("--type <type>", "workflow or activity"),
  ).action(async (name: string, flags: ClientFlags & { type: string }) => {
    const type = queueType(flags.type);
    await withClient(flags, async (client) => {
      const found = (await client.raw.queues.listTaskQueues({ type })).queues.find((q) => q.name === name);
      if (!found) throw new UsageError(`there is no ${flags.type} queue "${name}" (dex queue list shows the queues)`);
      const q = queueView(found);
      if (flags.json) return printJson(q);
      const lines: Array<[string, string]> = [
        ["name", q.name],
        ["type", q.type],
        ["status", q.status],
        ["capacity", q.capacity === 0 ? "unlimited" : String(q.capacity)],
        ["depth", String(q.depth)],
        ["in flight", String(q.inFlight)],
        ["oldest pending", q.oldestPendingAgeMs ? `${(q.oldestPendingAgeMs / 1000).toFixed(1)}s` : "-"],
        ["last poll", q.lastPollTime === undefined ? "never" : `${q.lastPollTime} (${lastPollText(q)})`],
      ];
      if (q.retentionSeconds !== undefined) lines.push(["retention", retentionText(q)]);
      for (const [key, value] of lines) process.stdout.write(`${`${key}:`.padEnd(16)}${value}\n`);
    });
  });

  withClientFlags(
    queue
      .command("update <name>")
      .description("change a queue's capacity (applies from the next poll, on every server) and/or retention (from the next sweep)")
      .requiredOption("--type <type>", "workflow or activity")
      .option("--capacity <n>", "maximum tasks leased at once across the cluster (0 = unlimited)")
      .option("--retention <duration>", `${RETENTION_HELP}; "default" follows the server's --default-retention again`),
  ).action(async (name: string, flags: ClientFlags & { type: string; capacity?: string; retention?: string }) => {
    const type = queueType(flags.type);
    if (flags.capacity === undefined && flags.retention === undefined) {
      throw new UsageError("nothing to change: pass --capacity and/or --retention");
    }
    const capacity = flags.capacity === undefined ? 0 : parseIntFlag("--capacity", flags.capacity, 0, 1_000_000_000);
    const retention = flags.retention === undefined || flags.retention === "default" ? undefined : retentionDuration(flags.retention);
    const paths = [...(flags.capacity === undefined ? [] : ["capacity"]), ...(flags.retention === undefined ? [] : ["retention"])];
    await withClient(flags, async (client) => {
      const response = await client.raw.queues.updateTaskQueue({ name, type, capacity, retention, updateMask: { paths } });
      const q = queueView(response.queue!);
      if (flags.json) printJson(q);
      else {
        const changes = [
          ...(flags.capacity === undefined ? [] : [`capacity ${q.capacity === 0 ? "unlimited" : q.capacity}`]),
          ...(flags.retention === undefined ? [] : [`retention ${retentionText(q)}`]),
        ];
        process.stdout.write(`${flags.type} queue ${name}: ${changes.join(", ")}\n`);
      }
    });
  });

  for (const [verb, description] of [
    ["pause", "stop handing out tasks (in-flight tasks finish; new ones accumulate)"],
    ["resume", "hand out tasks again, in order"],
  ] as const) {
    withClientFlags(
      queue.command(`${verb} <name>`).description(description).requiredOption("--type <type>", "workflow or activity"),
    ).action(async (name: string, flags: ClientFlags & { type: string }) => {
      const type = queueType(flags.type);
      await withClient(flags, async (client) => {
        const response =
          verb === "pause"
            ? await client.raw.queues.pauseTaskQueue({ name, type })
            : await client.raw.queues.resumeTaskQueue({ name, type });
        if (flags.json) printJson(queueView(response.queue!));
        else process.stdout.write(`${flags.type} queue ${name} ${verb === "pause" ? "paused" : "resumed"}\n`);
      });
    });
  }

  withClientFlags(
    queue
      .command("delete <name>")
      .description("delete an empty queue and its partition")
      .requiredOption("--type <type>", "workflow or activity"),
  ).action(async (name: string, flags: ClientFlags & { type: string }) => {
    const type = queueType(flags.type);
    await withClient(flags, async (client) => {
      await client.raw.queues.deleteTaskQueue({ name, type });
      if (flags.json) printJson({ name, type: flags.type, deleted: true });
      else process.stdout.write(`deleted ${flags.type} queue ${name}\n`);
    });
  });
}

function retentionDuration(text: string): { seconds: bigint; nanos: number } {
  return { seconds: BigInt(parseRetention("--retention", text)), nanos: 0 };
}

import type { Command } from "commander";
import { TaskQueueStatus, TaskQueueType, type TaskQueue } from "@dex/proto";
import { type ClientFlags, withClient, withClientFlags } from "../connection.js";
import { UsageError } from "../errors.js";
import { parseIntFlag } from "../options.js";
import { printJson, printTable } from "../output.js";

function queueType(text: string | undefined): TaskQueueType {
  if (text === undefined) throw new UsageError(`--type is required: "workflow" or "activity"`);
  if (text === "workflow") return TaskQueueType.WORKFLOW;
  if (text === "activity") return TaskQueueType.ACTIVITY;
  throw new UsageError(`--type must be "workflow" or "activity", got "${text}"`);
}

export function queueView(queue: TaskQueue) {
  const age = queue.oldestPendingAge;
  return {
    name: queue.name,
    type: queue.type === TaskQueueType.WORKFLOW ? "workflow" : "activity",
    status: queue.status === TaskQueueStatus.PAUSED ? "paused" : "active",
    capacity: queue.capacity,
    depth: Number(queue.depth),
    inFlight: Number(queue.inFlight),
    oldestPendingAgeMs: age ? Number(age.seconds) * 1000 + Math.floor(age.nanos / 1e6) : 0,
  };
}

export function registerQueueCommands(program: Command): void {
  const queue = program.command("queue").description("create and inspect task queues");

  withClientFlags(
    queue
      .command("create <name>")
      .description("create a task queue (and its Postgres partition)")
      .requiredOption("--type <type>", "workflow or activity")
      .option("--capacity <n>", "maximum tasks leased at once across the cluster (0 = unlimited)", "0"),
  ).action(async (name: string, flags: ClientFlags & { type: string; capacity: string }) => {
    const type = queueType(flags.type);
    const capacity = parseIntFlag("--capacity", flags.capacity, 0, 1_000_000_000);
    await withClient(flags, async (client) => {
      const response = await client.raw.queues.createTaskQueue({ name, type, capacity });
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
            ["NAME", "TYPE", "STATUS", "CAPACITY", "DEPTH", "IN FLIGHT", "OLDEST PENDING"],
            views.map((q) => [
              q.name,
              q.type,
              q.status,
              q.capacity === 0 ? "unlimited" : String(q.capacity),
              String(q.depth),
              String(q.inFlight),
              q.oldestPendingAgeMs ? `${(q.oldestPendingAgeMs / 1000).toFixed(1)}s` : "-",
            ]),
          );
      });
    },
  );

  withClientFlags(
    queue
      .command("update <name>")
      .description("change a queue's capacity; applies from the next poll, on every server")
      .requiredOption("--type <type>", "workflow or activity")
      .requiredOption("--capacity <n>", "maximum tasks leased at once across the cluster (0 = unlimited)"),
  ).action(async (name: string, flags: ClientFlags & { type: string; capacity: string }) => {
    const type = queueType(flags.type);
    const capacity = parseIntFlag("--capacity", flags.capacity, 0, 1_000_000_000);
    await withClient(flags, async (client) => {
      const response = await client.raw.queues.updateTaskQueue({ name, type, capacity });
      if (flags.json) printJson(queueView(response.queue!));
      else process.stdout.write(`${flags.type} queue ${name}: capacity ${capacity === 0 ? "unlimited" : capacity}\n`);
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

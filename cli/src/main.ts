/**
 * The `dex` command line. Every user error prints one line (`dex: ...`) and
 * exits 1; stack traces are only printed with DEX_DEBUG=1. Commands whose exit
 * code is an answer (`dex health`, `dex workflow result`) set process.exitCode
 * and document their codes in their --help.
 *
 * Start-up: only the module of the command being run is loaded. The others are listed for
 * `dex --help` by name and description alone, so `dex --help` loads commander and nothing else, and
 * a client command never loads the server, postgres.js or embedded Postgres (importing @dex/server
 * alone took about 0.5 s). tests/e2e/cli-help checks the descriptions below match the commands'.
 */
import { Command } from "commander";
import { describeError } from "./errors.js";

interface TopLevelCommand {
  name: string;
  /** What `dex --help` lists; the same text as the command's own (tests/e2e/cli-help checks). */
  description: string;
  /** Loads the command's module and registers it in full: options, subcommands, action. */
  register(program: Command): Promise<unknown>;
}

const COMMANDS: TopLevelCommand[] = [
  {
    name: "dev",
    description: "run dex for development: an embedded Postgres, migrations, default queues, and the server",
    register: async (program) => (await import("./commands/dev.js")).registerDevCommand(program),
  },
  {
    name: "server",
    description: "run the dex server against an existing, migrated Postgres database",
    register: async (program) => (await import("./commands/server.js")).registerServerCommand(program),
  },
  {
    name: "migrate",
    description: "apply pending database migrations (safe to run concurrently and repeatedly)",
    register: async (program) => (await import("./commands/server.js")).registerMigrateCommand(program),
  },
  {
    name: "auth",
    description: "create, list and revoke API keys (directly in the database, like `dex migrate`)",
    register: async (program) => (await import("./commands/auth.js")).registerAuthCommands(program),
  },
  {
    name: "workflow",
    description: "start, signal, cancel, inspect and list workflow runs",
    register: async (program) => (await import("./commands/workflow.js")).registerWorkflowCommands(program),
  },
  {
    name: "queue",
    description: "create and inspect task queues",
    register: async (program) => (await import("./commands/queue.js")).registerQueueCommands(program),
  },
  {
    name: "schedule",
    description: "create, inspect, pause, trigger and backfill schedules",
    register: async (program) => (await import("./commands/schedule.js")).registerScheduleCommands(program),
  },
  {
    name: "health",
    description: "ask a dex server whether it is serving (grpc.health.v1 Check); exit 0 only when SERVING",
    register: async (program) => (await import("./commands/health.js")).registerHealthCommand(program),
  },
];

/**
 * The program with the named command registered in full and every other command by name and
 * description only, for the help listing. No name (`dex`, `dex --help`, an unknown command): every
 * command by name, so commander lists them and suggests the closest.
 */
export async function buildProgram(commandName?: string): Promise<Command> {
  const program = new Command("dex")
    .description("dex: durable execution on Postgres. Workflows as code, served over gRPC.")
    .configureOutput({
      outputError: (text, write) => write(`dex: ${text.replace(/^error: /, "")}`),
    })
    .showSuggestionAfterError(true);
  for (const command of COMMANDS) {
    if (command.name === commandName) await command.register(program);
    else program.command(command.name).description(command.description);
  }
  return program;
}

/** The command a user asked for: `dex workflow list` and `dex help workflow` both name `workflow`. */
function requestedCommand(argv: string[]): string | undefined {
  const [first, second] = argv.slice(2);
  return first === "help" ? second : first;
}

export async function main(argv: string[]): Promise<void> {
  const program = await buildProgram(requestedCommand(argv));
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    // Commander has already printed its own parse errors; --help and --version exit 0.
    if (isCommanderExit(err)) process.exit(err.exitCode);
    process.stderr.write(`dex: ${describeError(err, (err as { address?: string }).address)}\n`);
    if (process.env.DEX_DEBUG === "1" && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exit(1);
  }
}

function isCommanderExit(err: unknown): err is { exitCode: number } {
  return typeof err === "object" && err !== null && "code" in err && String((err as { code: unknown }).code).startsWith("commander.");
}

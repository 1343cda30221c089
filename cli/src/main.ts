/**
 * The `dex` command line. Every user error prints one line (`dex: ...`) and
 * exits 1; stack traces are only printed with DEX_DEBUG=1. Commands whose exit
 * code is an answer (`dex health`, `dex workflow result`) set process.exitCode
 * and document their codes in their --help.
 *
 * Start-up: every command module is registered for --help, so none may import
 * heavy code at its top (the SDK, @dex/proto, @dex/server, postgres); each
 * action imports what it needs.
 */
import { Command } from "commander";
import { describeError } from "./errors.js";
import { registerAuthCommands } from "./commands/auth.js";
import { registerDevCommand } from "./commands/dev.js";
import { registerHealthCommand } from "./commands/health.js";
import { registerMigrateCommand, registerServerCommand } from "./commands/server.js";
import { registerWorkflowCommands } from "./commands/workflow.js";
import { registerQueueCommands } from "./commands/queue.js";

export function buildProgram(): Command {
  const program = new Command("dex")
    .description("dex: durable execution on Postgres. Workflows as code, served over gRPC.")
    .configureOutput({
      outputError: (text, write) => write(`dex: ${text.replace(/^error: /, "")}`),
    })
    .showSuggestionAfterError(true);
  registerDevCommand(program);
  registerServerCommand(program);
  registerMigrateCommand(program);
  registerAuthCommands(program);
  registerWorkflowCommands(program);
  registerQueueCommands(program);
  registerHealthCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
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

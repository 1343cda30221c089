import { DexError } from "@dex/proto";

/** A mistake the user can fix: printed as one line, exit code 1, never a stack trace. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/**
 * Turns any error into the one line the CLI prints. Server errors keep the
 * server's message (it already says what to fix); an unreachable server gets a hint.
 */
export function describeError(err: unknown, address?: string): string {
  if (err instanceof UsageError) return err.message;
  if (err instanceof DexError) {
    if (err.code === "UNAVAILABLE" || err.code === "DEADLINE_EXCEEDED") {
      const where = address ? ` at ${address}` : "";
      return `cannot reach the dex server${where} (${err.message}); is it running? Start one with \`dex dev\` or pass --address`;
    }
    return `${err.code}: ${err.message}`;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}

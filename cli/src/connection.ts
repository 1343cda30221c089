import { Command } from "commander";
import { createClient, DEFAULT_ADDRESS, type Client } from "@dex/sdk";

export interface ClientFlags {
  address?: string;
  json?: boolean;
}

/** Adds the flags every client command takes. */
export function withClientFlags(command: Command): Command {
  return command
    .option("--address <host:port>", `dex server address (default: $DEX_ADDRESS or ${DEFAULT_ADDRESS})`)
    .option("--json", "print machine-readable JSON");
}

export function resolveAddress(flags: ClientFlags): string {
  return flags.address ?? process.env.DEX_ADDRESS ?? DEFAULT_ADDRESS;
}

/** Runs `fn` with a connected client, closing it afterwards; errors carry the address for the hint. */
export async function withClient<T>(flags: ClientFlags, fn: (client: Client) => Promise<T>): Promise<T> {
  const address = resolveAddress(flags);
  const client = createClient({ address });
  try {
    return await fn(client);
  } catch (err) {
    if (err && typeof err === "object") Object.assign(err, { address });
    throw err;
  } finally {
    client.close();
  }
}

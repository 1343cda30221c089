/** What a dex server process said about itself: its log (every life of it) under the scenario's log directory. */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { check, type ScenarioContext } from "../environment.js";
import type { Check } from "../invariants.js";
import type { ServerSlot } from "../processes.js";

/**
 * No call answered INTERNAL: a connection that died under a statement is the
 * database being unavailable (UNAVAILABLE, retried by the caller), never a bug
 * of the server's. The server logs each INTERNAL answer as "internal error".
 */
export async function noInternalErrors(ctx: ScenarioContext, server: ServerSlot): Promise<Check> {
  const log = await readFile(join(ctx.group.logDir, `${server.name}.log`), "utf8").catch(() => "");
  const lines = log.split("\n").filter((line) => line.includes('"msg":"internal error"'));
  const violations = lines.map((line) => {
    try {
      const entry = JSON.parse(line) as { method?: string; errorId?: string; err?: { message?: string } };
      return `${entry.method ?? "?"} (${entry.errorId ?? "?"}): ${(entry.err?.message ?? "").split("\n")[0]!.slice(0, 160)}`;
    } catch {
      return line.slice(0, 200);
    }
  });
  return check("the server answered no call INTERNAL (database faults are UNAVAILABLE)", lines.length === 0, `${server.name}.log: ${lines.length} internal errors`, violations);
}

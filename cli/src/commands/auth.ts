/**
 * `dex auth create|list|revoke`: API keys, written straight to the database
 * (--database-url or DEX_DATABASE_URL, like `dex migrate`) rather than through
 * a server: the first admin key has to exist before any server accepts a call.
 */
import type { Command } from "commander";
import type { ApiKeyRecord, ApiKeyRole } from "@dex/server";
import { UsageError } from "../errors.js";
import { printJson, printTable } from "../output.js";
import { databaseUrl, type DatabaseFlags } from "./server.js";

/** @dex/server, loaded by the action that needs it: `dex --help` and client commands never do. */
type Server = typeof import("@dex/server");
type Sql = ReturnType<Server["openDatabase"]>;

/** What `list` and `create --json` show of a key: never its secret or hash. */
function keyView(key: ApiKeyRecord) {
  return {
    id: key.id,
    name: key.name,
    role: key.role,
    queues: key.queues,
    createdAt: key.createdAt.toISOString(),
    revokedAt: key.revokedAt ? key.revokedAt.toISOString() : null,
  };
}

/** Opens the database, checks it is reachable and migrated, runs `fn` (with @dex/server at hand), closes it. */
async function withDatabase<T>(flags: DatabaseFlags, fn: (sql: Sql, server: Server) => Promise<T>): Promise<T> {
  const url = databaseUrl(flags);
  const server = await import("@dex/server");
  const { assertMigrated, openDatabase, redactUrl } = server;
  const sql = openDatabase({ url, maxConnections: 1, applicationName: "dex auth" });
  try {
    try {
      await sql`select 1`;
    } catch (err) {
      throw new UsageError(`cannot reach the database at ${redactUrl(url)}: ${(err as Error).message}; check the URL and that Postgres is running`);
    }
    await assertMigrated(sql);
    return await fn(sql, server);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function role(server: Server, text: string): ApiKeyRole {
  if ((server.API_KEY_ROLES as readonly string[]).includes(text)) return text as ApiKeyRole;
  throw new UsageError(`--role must be one of ${server.API_KEY_ROLES.join(", ")}, got "${text}"`);
}

export function registerAuthCommands(program: Command): void {
  const auth = program
    .command("auth")
    .description("create, list and revoke API keys (directly in the database, like `dex migrate`)");
  const databaseOption = ["--database-url <url>", "Postgres URL (default: $DEX_DATABASE_URL)"] as const;

  auth
    .command("create")
    .description("create an API key and print it, once")
    .requiredOption("--name <name>", "a name for the key, unique for good (letters, digits, '.', '_', '-')")
    .requiredOption("--role <role>", "worker (poll and complete tasks), client (start, signal, read, cancel runs) or admin (everything)")
    .option("--queue <name>", "worker keys: may use only this task queue (repeat for several; default: every queue)", collect)
    .option(...databaseOption)
    .option("--json", "print machine-readable JSON (with the key)")
    .action(async (flags: DatabaseFlags & { name: string; role: string; queue?: string[]; json?: boolean }) => {
      // Before the database is opened: a bad --role is a usage error whatever the database does.
      const keyRole = role(await import("@dex/server"), flags.role);
      const created = await withDatabase(flags, (sql, server) => server.createApiKey(sql, { name: flags.name, role: keyRole, queues: flags.queue ?? [] }));
      if (flags.json) {
        printJson({ ...keyView(created.key), key: created.text });
        return;
      }
      const queues = created.key.queues ? `, queues ${created.key.queues.join(", ")}` : "";
      process.stdout.write(
        `created ${created.key.role} key "${created.key.name}" (id ${created.key.id}${queues})\n` +
          `${created.text}\n` +
          `this is the only time the key is shown: store it now (clients send it with --api-key, DEX_API_KEY or the SDK's apiKey)\n`,
      );
    });

  auth
    .command("list")
    .description("list API keys (never their secrets)")
    .option(...databaseOption)
    .option("--json", "print machine-readable JSON")
    .action(async (flags: DatabaseFlags & { json?: boolean }) => {
      const keys = (await withDatabase(flags, (sql, server) => server.listApiKeys(sql))).map(keyView);
      if (flags.json) {
        printJson(keys);
        return;
      }
      printTable(
        ["NAME", "ROLE", "QUEUES", "ID", "CREATED", "REVOKED"],
        keys.map((k) => [k.name, k.role, k.queues ? k.queues.join(",") : k.role === "worker" ? "(all)" : "", k.id, k.createdAt, k.revokedAt ?? ""]),
      );
    });

  auth
    .command("revoke <name>")
    .description("revoke an API key; every server refuses it within its key cache time (5 s by default)")
    .option(...databaseOption)
    .action(async (name: string, flags: DatabaseFlags) => {
      const { DEFAULT_API_KEY_CACHE_MS } = await import("@dex/server");
      const { key, alreadyRevoked } = await withDatabase(flags, (sql, server) => server.revokeApiKey(sql, name));
      process.stdout.write(
        alreadyRevoked
          ? `key "${key.name}" was already revoked at ${key.revokedAt!.toISOString()}\n`
          : `revoked key "${key.name}"; servers refuse it within ${DEFAULT_API_KEY_CACHE_MS / 1000} s (their key cache)\n`,
      );
    });
}

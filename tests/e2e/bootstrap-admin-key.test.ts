/**
 * The first admin key from a secret file (issue 11, docs/decisions/0007-bootstrap-admin-key.md):
 * `dex migrate` with DEX_BOOTSTRAP_ADMIN_KEY_FILE stores the file's key as the admin key
 * "bootstrap-admin" (its sha256 only), a `dex server` then accepts it, and running the step again,
 * or several at once, changes nothing. A file that disagrees with the stored key fails the step;
 * a revoked bootstrap key stays revoked.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { freePort } from "@dex/server";
import { createTestDatabase, type TestDatabase } from "@dex/testing";
import { runDex, startServerProcess, type ServerProcess } from "../support/server-process.js";

type Run = Awaited<ReturnType<typeof runDex>>;

function newKeyText(): string {
  return `dex_${randomBytes(8).toString("hex")}_${randomBytes(32).toString("hex")}`;
}

function ok(run: Run): Run {
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  return run;
}

/** A user error: exit 1, one `dex: ...` line on stderr matching `pattern`. */
function oneLine(run: Run, pattern: RegExp): void {
  expect(run.code).toBe(1);
  expect(run.stderr).toMatch(/^dex: [^\n]*\n$/);
  expect(run.stderr).toMatch(pattern);
}

describe("DEX_BOOTSTRAP_ADMIN_KEY_FILE on `dex migrate`", () => {
  const databases: TestDatabase[] = [];
  const sqls: postgres.Sql[] = [];
  let dir: string;
  let server: ServerProcess | undefined;

  async function database(): Promise<{ db: TestDatabase; sql: postgres.Sql }> {
    const db = await createTestDatabase();
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    databases.push(db);
    sqls.push(sql);
    return { db, sql };
  }

  async function keyFile(name: string, text: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, text, { mode: 0o600 });
    return path;
  }

  const migrateWith = (db: TestDatabase, file: string) => runDex(["migrate"], { DEX_DATABASE_URL: db.url, DEX_BOOTSTRAP_ADMIN_KEY_FILE: file });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "dex-bootstrap-"));
  });
  afterAll(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
    await Promise.all(sqls.map((sql) => sql.end()));
    await Promise.all(databases.map((db) => db.drop()));
    await rm(dir, { recursive: true, force: true });
  });

  it("stores the file's key (its hash only) as an admin key that a server accepts; a rerun finds it", async () => {
    const { db, sql } = await database();
    const key = newKeyText();
    // As `echo "$key" > file` writes it: the trailing newline is not part of the key.
    const file = await keyFile("admin-key", `${key}\n`);
    const first = ok(await migrateWith(db, file));
    const id = key.split("_")[1]!;
    expect(first.stdout).toBe(
      `database is up to date\nstored admin key "bootstrap-admin" (id ${id}) from ${file}; clients use the file's text as their API key\n`,
    );
    const rows = await sql<{ id: string; name: string; role: string; queues: string[] | null; secret_sha256: Buffer; revoked_at: Date | null }[]>`
      select id, name, role, queues, secret_sha256, revoked_at from dex.api_keys`;
    const secret = key.split("_")[2]!;
    expect(rows).toEqual([
      { id, name: "bootstrap-admin", role: "admin", queues: null, secret_sha256: createHash("sha256").update(secret).digest(), revoked_at: null },
    ]);
    const table = (await sql<{ t: string }[]>`select string_agg(k::text, ' ') as t from dex.api_keys k`)[0]!.t;
    expect(table).not.toContain(secret.slice(0, 16));
    expect(first.stdout).not.toContain(secret.slice(0, 16));

    expect(ok(await migrateWith(db, file)).stdout).toBe(`database is up to date\nadmin key "bootstrap-admin" (id ${id}) from ${file} already exists\n`);

    server = await startServerProcess({ databaseUrl: db.url, port: await freePort(), requireApiKeys: true });
    const address = ["--address", server.address];
    // An admin-only call, with the file's text as the key.
    expect(ok(await runDex(["queue", "create", "orders", "--type", "workflow", ...address], { DEX_API_KEY: key })).stdout).toBe(
      "created workflow queue orders\n",
    );
    oneLine(await runDex(["workflow", "list", ...address], { DEX_API_KEY: newKeyText() }), /UNAUTHENTICATED/);
  });

  it("stores one key when several migrations with the same file run at once", async () => {
    const { db, sql } = await database();
    const file = await keyFile("concurrent-key", newKeyText());
    const runs = await Promise.all([1, 2, 3, 4].map(() => migrateWith(db, file)));
    runs.forEach(ok);
    const said = runs.map((run) => (run.stdout.includes("stored admin key") ? "stored" : run.stdout.includes("already exists") ? "found" : run.stdout));
    expect(said.sort()).toEqual(["found", "found", "found", "stored"]);
    expect(await sql`select name from dex.api_keys`).toEqual([{ name: "bootstrap-admin" }]);
  });

  it("fails on a file that disagrees with the stored key, and leaves a revoked bootstrap key revoked", async () => {
    const { db, sql } = await database();
    ok(await migrateWith(db, await keyFile("original", newKeyText())));
    const other = await keyFile("other", newKeyText());
    oneLine(await migrateWith(db, other), /the admin key "bootstrap-admin" exists with another secret than the key in .*other; the file only seeds the first admin key/);

    ok(await runDex(["auth", "revoke", "bootstrap-admin", "--database-url", db.url]));
    const revoked = ok(await migrateWith(db, other));
    expect(revoked.stdout).toMatch(/^database is up to date\nadmin key "bootstrap-admin" was revoked at \d{4}-[^;]+; left revoked \(.*other is not used again\)\n$/);
    const [row] = await sql<{ revoked: boolean; n: number }[]>`select bool_and(revoked_at is not null) as revoked, count(*)::int as n from dex.api_keys`;
    expect(row).toEqual({ revoked: true, n: 1 });
  });

  it("accepts the text of an existing admin key; refuses malformed or unreadable files before touching the database", async () => {
    const { db, sql } = await database();
    const created = JSON.parse(ok(await runDex(["auth", "create", "--name", "ops", "--role", "admin", "--json", "--database-url", db.url])).stdout) as {
      key: string;
      id: string;
    };
    const existing = ok(await migrateWith(db, await keyFile("existing", created.key)));
    expect(existing.stdout).toContain(`admin key "ops" (id ${created.id}) from`);
    expect(existing.stdout).toContain("already exists");

    const [garbage, missing, unreachable] = await Promise.all([
      migrateWith(db, await keyFile("garbage", "hunter2\n")),
      migrateWith(db, join(dir, "no-such-file")),
      runDex(["migrate"], { DEX_DATABASE_URL: "postgres://dex@127.0.0.1:1/dex", DEX_BOOTSTRAP_ADMIN_KEY_FILE: join(dir, "no-such-file") }),
    ]);
    oneLine(garbage, /garbage does not hold a dex API key \(dex_<16 hex digits>_<64 hex digits>\); generate one with: echo "dex_\$\(openssl rand -hex 8\)_\$\(openssl rand -hex 32\)"/);
    expect(garbage.stderr).not.toContain("hunter2");
    oneLine(missing, /cannot read the bootstrap admin key file .*no-such-file .*ENOENT/);
    // The file is read first: an unreadable secret says so even when the database is away too.
    oneLine(unreachable, /cannot read the bootstrap admin key file/);
    expect(await sql`select name from dex.api_keys order by name`).toEqual([{ name: "ops" }]);
  });
});

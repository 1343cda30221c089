import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { inject } from "vitest";
import { databaseUrl } from "./global-setup.js";

export interface TestDatabase {
  /** URL of a fresh, migrated database of its own. */
  readonly url: string;
  readonly name: string;
  /** Drops the database (terminating connections left open). */
  drop(): Promise<void>;
}

/** A fresh database cloned from the migrated template; call from a test file (beforeAll). */
export function createTestDatabase(): Promise<TestDatabase> {
  return createDatabase(inject("dexTemplateDatabase"));
}

/** A database with no dex schema at all (for migration tests). */
export function createEmptyDatabase(): Promise<TestDatabase> {
  return createDatabase(undefined);
}

async function createDatabase(template: string | undefined): Promise<TestDatabase> {
  const adminUrl = inject("dexAdminUrl");
  const name = `dex_test_${randomBytes(6).toString("hex")}`;
  await withAdmin(adminUrl, (sql) => sql.unsafe(template ? `create database ${name} template ${template}` : `create database ${name}`));
  return {
    url: databaseUrl(adminUrl, name),
    name,
    drop: () => withAdmin(adminUrl, (sql) => sql.unsafe(`drop database if exists ${name} with (force)`)),
  };
}

async function withAdmin(adminUrl: string, fn: (sql: postgres.Sql) => Promise<unknown>): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await fn(sql);
  } finally {
    await sql.end();
  }
}

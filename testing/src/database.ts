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
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = inject("dexAdminUrl");
  const template = inject("dexTemplateDatabase");
  const name = `dex_test_${randomBytes(6).toString("hex")}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name} template ${template}`);
  } finally {
    await admin.end();
  }
  return {
    url: databaseUrl(adminUrl, name),
    name,
    async drop() {
      const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
      try {
        await sql.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await sql.end();
      }
    },
  };
}

/** A database with no dex schema at all (for migration tests). */
export async function createEmptyDatabase(): Promise<TestDatabase> {
  const adminUrl = inject("dexAdminUrl");
  const name = `dex_test_${randomBytes(6).toString("hex")}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  return {
    url: databaseUrl(adminUrl, name),
    name,
    async drop() {
      const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
      try {
        await sql.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await sql.end();
      }
    },
  };
}

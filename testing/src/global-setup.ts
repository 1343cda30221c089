/**
 * vitest globalSetup: one Postgres for the whole test run and a migrated
 * template database that each test file clones (CREATE DATABASE ... TEMPLATE,
 * a file copy: far faster than migrating per file).
 *
 * Postgres is the embedded one (real binaries from npm) unless
 * DEX_TEST_DATABASE_URL names a server; that URL's user needs CREATEDB.
 */
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import type { TestProject } from "vitest/node";
import postgres from "postgres";
import { migrate } from "@dex/server/store/migrator";
import { startEmbeddedPostgres, type RunningPostgres } from "@dex/server/dev/embedded-postgres";

declare module "vitest" {
  export interface ProvidedContext {
    /** Admin URL of the test cluster (any database on it). */
    dexAdminUrl: string;
    /** Name of the migrated template database to clone. */
    dexTemplateDatabase: string;
  }
}

export function databaseUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let embedded: RunningPostgres | undefined;
  let dataDir: string | undefined;
  let adminUrl = process.env.DEX_TEST_DATABASE_URL;
  if (!adminUrl) {
    // Directly under the temp dir, so the `postgres` user can create it when we run as root.
    dataDir = `${tmpdir()}/dex-test-pg-${process.pid}-${randomBytes(3).toString("hex")}`;
    embedded = await startEmbeddedPostgres({ dataDir, ephemeral: true });
    adminUrl = embedded.url;
  }
  const template = `dex_template_${randomBytes(4).toString("hex")}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${template}`);
  const templateSql = postgres(databaseUrl(adminUrl, template), { max: 1, onnotice: () => {} });
  try {
    await migrate(templateSql);
  } finally {
    await templateSql.end();
  }
  project.provide("dexAdminUrl", adminUrl);
  project.provide("dexTemplateDatabase", template);

  return async () => {
    if (embedded) {
      await admin.end();
      await embedded.stop();
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
      return;
    }
    // A shared server: remove what this run created.
    const leftovers = await admin<{ datname: string }[]>`
      select datname from pg_database where datname like 'dex_test_%' or datname = ${template}`;
    for (const { datname } of leftovers) await admin.unsafe(`drop database if exists ${datname} with (force)`);
    await admin.end();
  };
}

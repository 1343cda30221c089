/**
 * `dex server` stops cleanly (exit 0) on a SIGTERM sent the moment it says it is listening, as a
 * supervisor or a script that waits for that line may send it. The handler must be armed before the
 * line is written: a signal that finds none kills the process instead (exit by signal, no clean
 * close). A race, so the test tries several times; before the fix 10 tries failed about every other run of this test.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "@dex/server";
import { createTestDatabase, type TestDatabase } from "@dex/testing";
import { startServerProcess } from "../support/server-process.js";

const TRIES = 10;

describe("dex server and SIGTERM", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it(`exits 0 when SIGTERM comes right after the listening line (${TRIES} tries)`, async () => {
    const outcomes: Array<{ code: number | null; signal: NodeJS.Signals | null }> = [];
    for (let i = 0; i < TRIES; i++) {
      const server = await startServerProcess({ databaseUrl: db.url, port: await freePort() });
      server.child.kill("SIGTERM");
      const code = await server.exited;
      outcomes.push({ code, signal: server.child.signalCode });
      expect(server.output()).toMatch(/SIGTERM received, shutting down/);
    }
    expect(outcomes).toEqual(Array.from({ length: TRIES }, () => ({ code: 0, signal: null })));
  });
});

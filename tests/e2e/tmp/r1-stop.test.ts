import { it, expect } from "vitest";
import { freePort } from "@dex/server";
import { createTestDatabase } from "@dex/testing";
import { startServerProcess } from "../../support/server-process.js";
import { stopProcess } from "../../support/spawned.js";
it("stops", async () => {
  const db = await createTestDatabase();
  const codes: unknown[] = [];
  for (let i = 0; i < 8; i++) {
    const s = await startServerProcess({ databaseUrl: db.url, port: await freePort() });
    const code = await stopProcess(s);
    codes.push(code === 0 ? 0 : `${code}/${s.child.signalCode}`);
  }
  await db.drop();
  console.log("CODES", codes);
}, 300_000);

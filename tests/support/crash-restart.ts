/**
 * A `dex server` process that a test crashes (SIGKILL: no graceful shutdown, nothing flushed)
 * while work is in flight, then replaces with a new server on the same database and port, with a
 * client and in-process workers that stay connected across the two: what the recovery tests need
 * to show that the next server finishes what the killed one started.
 */
import { createClient, type Activity, type Client, type Workflow } from "@dex/sdk";
import { freePort } from "@dex/server";
import { createTestDatabase, type TestDatabase } from "@dex/testing";
import { createDefaultQueues, startWorkers } from "./process-workers.js";
import { startServerProcess, type ServerProcess } from "./server-process.js";
import { stopProcess } from "./spawned.js";

export interface CrashRestart {
  /** "host:port" of the server; the next server takes the same port, so it does not change. */
  readonly address: string;
  readonly client: Client;
  /**
   * SIGKILLs the server and waits for it to exit, the first time only; later calls do nothing.
   * Call it from an activity to crash the server while that activity is in flight.
   */
  crashOnce(): Promise<void>;
  /** Waits for the crash (something the test started calls crashOnce), then starts the next server. */
  restartAfterCrash(): Promise<void>;
  /** Stops the workers, the client and the server (SIGTERM), then drops the database; safe after any failure. */
  close(): Promise<void>;
}

/**
 * Creates a database, starts a server on it with the default queues, and in-process workers for
 * `registry`; without one, no workers (the test runs its own, e.g. a worker process it kills too).
 */
export async function startCrashRestart(registry?: {
  workflows: Record<string, Workflow>;
  activities?: Record<string, Activity>;
}): Promise<CrashRestart> {
  const db: TestDatabase = await createTestDatabase();
  const port = await freePort();
  let server: ServerProcess | undefined;
  let client: Client | undefined;
  let workers: { shutdown(): Promise<void> } | undefined;
  let crashed = false;
  const close = async () => {
    await workers?.shutdown();
    client?.close();
    await stopProcess(server);
    await db.drop();
  };
  try {
    server = await startServerProcess({ databaseUrl: db.url, port });
    const address = server.address;
    client = createClient({ address });
    await createDefaultQueues(client);
    if (registry) workers = startWorkers(address, registry);
    const first = server;
    return {
      address,
      client,
      crashOnce: async () => {
        if (crashed) return;
        crashed = true;
        first.child.kill("SIGKILL");
        await first.exited;
      },
      restartAfterCrash: async () => {
        await first.exited;
        if (!crashed) throw new Error("the server exited without crashOnce(); see its output:\n" + first.output());
        server = await startServerProcess({ databaseUrl: db.url, port });
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

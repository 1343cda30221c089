/** Test support: a real server on port 0 over a fresh database, and typed gRPC clients. */
import * as grpc from "@grpc/grpc-js";
import postgres from "postgres";
import {
  ClientService,
  createServiceClient,
  TaskQueueService,
  WorkerService,
  type ServiceClient,
} from "@dex/proto";
import { createTestDatabase, type TestDatabase } from "@dex/testing";
import { silentLogger, startServer, type DexServer, type ServerOptions } from "../src/index.js";

export interface Harness {
  db: TestDatabase;
  server: DexServer;
  sql: postgres.Sql;
  client: ServiceClient<typeof ClientService>;
  worker: ServiceClient<typeof WorkerService>;
  queues: ServiceClient<typeof TaskQueueService>;
  channel: grpc.Client;
  close(): Promise<void>;
}

export async function startHarness(options: Partial<ServerOptions> = {}): Promise<Harness> {
  const db = await createTestDatabase();
  const server = await startServer({
    databaseUrl: db.url,
    port: 0,
    logger: process.env.DEX_TEST_LOG ? undefined : silentLogger,
    ensureQueues: [
      { type: "workflow", name: "default" },
      { type: "activity", name: "default" },
    ],
    maxPollWaitMs: 2_000,
    ...options,
  });
  const channel = new grpc.Client(server.address, grpc.credentials.createInsecure());
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  return {
    db,
    server,
    sql,
    channel,
    client: createServiceClient(ClientService, channel),
    worker: createServiceClient(WorkerService, channel),
    queues: createServiceClient(TaskQueueService, channel),
    async close() {
      channel.close();
      await server.close();
      await sql.end();
      await db.drop();
    },
  };
}

export function json(value: unknown) {
  return { data: new TextEncoder().encode(JSON.stringify(value)), encoding: "json/plain" };
}

export function fromJson(payload: { data: Uint8Array } | undefined): unknown {
  return payload ? JSON.parse(new TextDecoder().decode(payload.data)) : undefined;
}

/** The oneof case of each event: a readable picture of a history. */
export function kinds(events: Array<{ attributes: { case: string | undefined } }>): string[] {
  return events.map((e) => e.attributes.case ?? "?");
}

let counter = 0;
export function uniqueId(prefix: string): string {
  return `${prefix}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
}

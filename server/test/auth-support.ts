/** For the API-key tests: keys made the way `dex auth create` makes them, and clients that send one. */
import * as grpc from "@grpc/grpc-js";
import type postgres from "postgres";
import { ClientService, createServiceClient, DexError, ScheduleService, TaskQueueService, WorkerService } from "@dex/proto";
import { createApiKey, type ApiKeyRole } from "../src/index.js";
import type { Harness } from "./helpers.js";

let counter = 0;

/** Creates a key in the database; returns its text. */
export async function newKey(sql: postgres.Sql, role: ApiKeyRole, queues?: string[]): Promise<{ name: string; text: string }> {
  const name = `${role}-${process.pid}-${++counter}`;
  const { text } = await createApiKey(sql, { name, role, ...(queues ? { queues } : {}) });
  return { name, text };
}

/** Metadata sent verbatim on every call: a bearer key, or anything a test wants to try. */
export function withMetadata(entries: Array<[string, string]>): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        for (const [key, value] of entries) metadata.add(key, value);
        next(metadata, listener);
      },
    });
}

/** The three typed clients over a channel of their own that sends `authorization: Bearer <key>` (or `metadata`). */
export function clientsWith(h: Harness, keyText: string | undefined, metadata?: Array<[string, string]>) {
  const entries = metadata ?? (keyText === undefined ? [] : [["authorization", `Bearer ${keyText}`] as [string, string]]);
  const channel = new grpc.Client(h.server.address, grpc.credentials.createInsecure(), { interceptors: [withMetadata(entries)] });
  return {
    client: createServiceClient(ClientService, channel),
    worker: createServiceClient(WorkerService, channel),
    queues: createServiceClient(TaskQueueService, channel),
    schedules: createServiceClient(ScheduleService, channel),
    close: () => channel.close(),
  };
}

/** The status code a call ends with: "OK" or the DexError's code. */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "OK",
    (err: unknown) => (err instanceof DexError ? err.code : `not a DexError: ${String(err)}`),
  );
}

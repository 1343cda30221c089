/** One gRPC channel to a dex server and the typed service clients over it. */
import * as grpc from "@grpc/grpc-js";
import { ClientService, TaskQueueService, WorkerService, createServiceClient, type ServiceClient } from "@dex/proto";

/** The address `dex dev` and `dex server` listen on by default. */
export const DEFAULT_ADDRESS = "127.0.0.1:7460";

export interface Connection {
  readonly address: string;
  readonly client: ServiceClient<typeof ClientService>;
  readonly worker: ServiceClient<typeof WorkerService>;
  readonly queues: ServiceClient<typeof TaskQueueService>;
  close(): void;
}

export function connect(address: string = DEFAULT_ADDRESS): Connection {
  const channel = new grpc.Client(address, grpc.credentials.createInsecure(), {
    // Histories can be large; the server pages them, but a page of big payloads can exceed 4 MB.
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    // No client keepalive pings: servers answer pings more frequent than they allow with GOAWAY
    // (too_many_pings). A killed server resets the connection; a silent one hits the poll deadline.
    // Reconnect quickly after an outage; the worker adds its own back-off on top.
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 5_000,
  });
  return {
    address,
    client: createServiceClient(ClientService, channel),
    worker: createServiceClient(WorkerService, channel),
    queues: createServiceClient(TaskQueueService, channel),
    close: () => channel.close(),
  };
}

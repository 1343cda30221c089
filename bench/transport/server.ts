/**
 * Benchmark server process: serves dex.v1.WorkerService with canned answers
 * over plaintext HTTP/2 on 127.0.0.1, with either @grpc/grpc-js (through
 * dex's own `grpcService` glue) or @connectrpc/connect-node (gRPC protocol).
 * Reports its port to the parent over IPC, then serves until killed.
 *
 *   node --import tsx bench/transport/server.ts grpc-js|connect-node
 */
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { DexError, WorkerService, grpcService } from "@dex/proto";
import * as grpc from "@grpc/grpc-js";
import { completeActivityTaskResponse, pollWorkflowTasksResponse } from "./messages.js";
import { isImpl, type ServerReady } from "./protocol.js";

const impl = process.argv[2];
if (!isImpl(impl)) throw new Error(`usage: server.ts grpc-js|connect-node (got ${impl})`);

// Only the two measured methods answer; the others exist because grpcService
// requires a handler for every method.
const unimplemented = async (): Promise<never> => {
  throw new DexError("UNIMPLEMENTED", "not part of the benchmark");
};
const pollWorkflowTasks = async () => pollWorkflowTasksResponse;
const completeActivityTask = async () => completeActivityTaskResponse;

async function serveGrpcJs(): Promise<number> {
  const server = new grpc.Server();
  const { definition, implementation } = grpcService(WorkerService, {
    pollWorkflowTasks,
    completeActivityTask,
    completeWorkflowTask: unimplemented,
    failWorkflowTask: unimplemented,
    pollActivityTasks: unimplemented,
    failActivityTask: unimplemented,
    heartbeatActivityTask: unimplemented,
    reportActivityTasks: unimplemented,
    pollQueryTasks: unimplemented,
    respondQueryTask: unimplemented,
  });
  server.addService(definition, implementation);
  return new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
}

async function serveConnectNode(): Promise<number> {
  const routes = (router: ConnectRouter) => router.service(WorkerService, { pollWorkflowTasks, completeActivityTask });
  // grpc-js neither compresses nor asks for compressed answers by default;
  // connect-node gzips answers over 1 KiB when the client accepts it, and
  // grpc-js's client says it does. Off here, so both sides move the same bytes.
  const handler = connectNodeAdapter({ routes, acceptCompression: [] });
  const server = http2.createServer(handler);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

const port = impl === "grpc-js" ? await serveGrpcJs() : await serveConnectNode();
const ready: ServerReady = { type: "ready", port };
process.send?.(ready);
// Exit with the parent, even if it dies without killing us.
process.on("disconnect", () => process.exit(0));

/**
 * A real gRPC proxy in front of a dex server that records what each call carried (its metadata and
 * request bytes) before passing it on unchanged: lets a test see what a worker sends on the wire,
 * which the server's spans cannot show (the server ignores what is not a valid trace context).
 */
import * as grpc from "@grpc/grpc-js";
import { ClientService, WorkerService } from "@dex/proto";

export interface RecordedCall {
  /** "WorkerService/CompleteWorkflowTask" and the like. */
  readonly method: string;
  readonly metadata: grpc.Metadata;
  readonly request: Buffer;
}

export interface WireRecorder {
  /** "127.0.0.1:port": point workers here instead of at the server. */
  readonly address: string;
  readonly calls: RecordedCall[];
  close(): Promise<void>;
}

const bytes = (b: Buffer) => b;

/** Proxies the WorkerService and ClientService (what workers call) to `target`. */
export async function startWireRecorder(target: string): Promise<WireRecorder> {
  const upstream = new grpc.Client(target, grpc.credentials.createInsecure());
  const server = new grpc.Server();
  const calls: RecordedCall[] = [];
  for (const service of [WorkerService, ClientService]) {
    for (const method of service.methods) {
      const path = `/${service.typeName}/${method.name}`;
      const handler: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) => {
        calls.push({ method: `${service.name}/${method.name}`, metadata: call.metadata.clone(), request: call.request });
        const forwarded = upstream.makeUnaryRequest(path, bytes, bytes, call.request, call.metadata, { deadline: call.getDeadline() }, (err, response) =>
          err ? callback(err) : callback(null, response),
        );
        // A worker that shuts down cancels its long polls: so does the proxy, upstream.
        call.on("cancelled", () => forwarded.cancel());
      };
      server.register(path, handler, bytes, bytes, "unary");
    }
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return {
    address: `127.0.0.1:${port}`,
    calls,
    async close() {
      server.forceShutdown();
      upstream.close();
    },
  };
}

/**
 * The gRPC port: the four dex.v1 services, health checking and reflection on one grpc-js server,
 * and its graceful stop. Each service's handlers are built once (checked against API keys by
 * api/auth.ts when the server requires them, then wrapped by guarded) and the same objects are
 * handed to the web UI's Connect endpoint (http/connect-services.ts), so both transports answer
 * through one code path.
 */
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";
import { ClientService, grpcService, ScheduleService, TaskQueueService, WorkerService, type ServiceHandlers } from "@dex/proto";
import { withApiKeys } from "./api/auth.js";
import { clientHandlers } from "./api/client-service.js";
import { guarded } from "./api/common.js";
import { addHealthAndReflection, type HealthHandle } from "./api/health.js";
import { scheduleHandlers } from "./api/schedule-service.js";
import { taskQueueHandlers } from "./api/task-queue-service.js";
import { workerHandlers } from "./api/worker-service.js";
import type { Authenticator } from "./engine/authenticator.js";
import type { Engine } from "./engine/context.js";
import type { ServedService } from "./http/connect-services.js";
import type { Logger } from "./logger.js";

/** How long close() lets in-flight calls finish before cutting them off, unless told otherwise. */
const SHUTDOWN_GRACE_MS = 10_000;

export type RpcHooks = Parameters<typeof grpcService>[2];

export interface RpcServices {
  /** The checked, guarded handlers of each service, for the web UI's Connect endpoint. */
  readonly served: ServedService[];
  /** grpc.health.v1 of the port: SERVING while the database answers. */
  readonly health: HealthHandle;
  /** Binds host:port (0 picks a free port) and resolves with the port bound. */
  listen(host: string, port: number, credentials: grpc.ServerCredentials): Promise<number>;
  /** Lets in-flight calls finish for up to graceMs (default 10 000), then cuts them off (they end CANCELLED). */
  close(graceMs: number | undefined): Promise<void>;
}

export function createRpcServices(
  engine: Engine,
  options: {
    serverOptions: grpc.ServerOptions;
    hooks: RpcHooks;
    /** Present when the server requires API keys. */
    authenticator: Authenticator | undefined;
    defaultRetentionSeconds: number;
    /** A call failed because the database is unreachable (it answers UNAVAILABLE). */
    onUnavailable: (method: string, err: unknown) => void;
    logger: Logger;
  },
): RpcServices {
  const { authenticator, hooks, logger } = options;
  const server = new grpc.Server(options.serverOptions);
  const onInternal = (method: string, err: unknown, errorId: string) => logger.error("internal error", { method, errorId, err });
  const serve = <S extends GenService<GenServiceMethods>>(service: S, handlers: ServiceHandlers<S>): ServedService => {
    // Inside guarded(): a key lookup while the database is away answers UNAVAILABLE like any call.
    const checked = authenticator ? withApiKeys(service, handlers, { authenticator, engine, logger }) : handlers;
    const ready = guarded(checked as never, options.onUnavailable, onInternal) as ServiceHandlers<S>;
    const { definition, implementation } = grpcService(service, ready, hooks);
    server.addService(definition, implementation);
    return { service, handlers: ready } as unknown as ServedService;
  };
  const served = [
    serve(ClientService, clientHandlers(engine)),
    serve(WorkerService, workerHandlers(engine)),
    serve(TaskQueueService, taskQueueHandlers(engine, { defaultRetentionSeconds: options.defaultRetentionSeconds })),
    serve(ScheduleService, scheduleHandlers(engine)),
  ];
  const health = addHealthAndReflection(
    server,
    served.map(({ service }) => service.typeName),
  );
  return {
    served,
    health,
    listen: (host, port, credentials) =>
      new Promise((resolve, reject) => {
        server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${port}`, credentials, (err, bound) => {
          if (err) reject(new Error(`cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
          else resolve(bound);
        });
      }),
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          logger.warn("in-flight calls did not finish in time; cutting them off");
          server.forceShutdown();
          resolve();
        }, graceMs ?? SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

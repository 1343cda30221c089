/**
 * grpc.health.v1 (SERVING for "" and each dex service while the database
 * answers, see database-health.ts; NOT_SERVING while it does not and once
 * shutdown has begun) and server reflection
 * (v1 and v1alpha), so grpcurl and other-language clients work from the
 * server alone. Reflection loads the .proto sources shipped in @dex/proto.
 */
import { readdirSync } from "node:fs";
import type * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";
import { protoRoot } from "@dex/proto";

export interface HealthHandle {
  /**
   * SERVING or NOT_SERVING everywhere: every dex service needs the database, so one
   * status for all. Ignored once shutdown() was called.
   */
  setServing(serving: boolean): void;
  /** Reports NOT_SERVING everywhere for good (shutdown has begun). */
  shutdown(): void;
}

export function addHealthAndReflection(server: grpc.Server, services: string[]): HealthHandle {
  const names = ["", ...services];
  const health = new HealthImplementation(Object.fromEntries(names.map((name) => [name, "SERVING" as const])));
  health.addToServer(server);

  const files = readdirSync(`${protoRoot}/dex/v1`)
    .filter((file) => file.endsWith(".proto"))
    .map((file) => `dex/v1/${file}`);
  const definitions = loadSync([...files, healthProtoPath], {
    includeDirs: [protoRoot],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  new ReflectionService(definitions).addToServer(server);

  let shuttingDown = false;
  const setAll = (status: "SERVING" | "NOT_SERVING") => {
    for (const name of names) health.setStatus(name, status);
  };
  return {
    setServing(serving) {
      if (!shuttingDown) setAll(serving ? "SERVING" : "NOT_SERVING");
    },
    shutdown() {
      shuttingDown = true;
      setAll("NOT_SERVING");
    },
  };
}

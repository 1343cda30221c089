/**
 * `dex health`: one grpc.health.v1 Check of a dex server, for container HEALTHCHECKs, compose and
 * scripts. It runs every few seconds in every container, so it loads only grpc-js and protobuf's
 * wire codec (not the SDK, the generated dex types or anything of the server), and only inside the
 * action: the health messages are one field each, encoded here by hand.
 */
import type { Command } from "commander";
import { type ClientFlags, DEFAULT_PORT, resolveAddress, resolveApiKey, withClientFlags } from "../connection.js";
import { connectFailure, UsageError } from "../errors.js";
import { parseIntFlag } from "../options.js";
import { printJson } from "../output.js";
import { clientTls } from "../tls.js";
import type { TlsOptions } from "@dex/sdk";

/**
 * Exit codes of `dex health`. 2 is skipped: Docker reserves it in HEALTHCHECK commands, and tools
 * commonly use it for usage errors. Anything but 0 is unhealthy to Docker and compose.
 */
export const HEALTH_EXIT = { SERVING: 0, NOT_SERVING: 1, UNREACHABLE: 3 } as const;

/** grpc.health.v1.HealthCheckResponse.ServingStatus by number. */
const STATUS_NAMES = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"] as const;
export type HealthStatus = (typeof STATUS_NAMES)[number];

/** The server's answer, or why there was none (the server could not be reached in time). */
export type HealthAnswer = { status: HealthStatus; detail?: string } | { unreachable: string };

export interface HealthTarget {
  address: string;
  tls: TlsOptions | undefined;
  apiKey: string | undefined;
}

const DEFAULT_TIMEOUT_MS = 5_000;

const HELP_AFTER = `
Exit codes:
  0  SERVING
  1  the server answered, but not SERVING: NOT_SERVING (it cannot reach its database,
     or it is shutting down), or it does not know --service; also bad flags, as every dex command
  3  no answer: nothing listening, connection refused, TLS handshake failed, or --timeout-ms passed

Example (Dockerfile):  HEALTHCHECK CMD ["dex", "health", "--address", "127.0.0.1:7460"]`;

export function registerHealthCommand(program: Command): void {
  withClientFlags(
    program
      .command("health")
      .description("ask a dex server whether it is serving (grpc.health.v1 Check); exit 0 only when SERVING")
      .option("--service <name>", 'the service to ask about, e.g. dex.v1.WorkerService (default: "", the whole server)')
      .option("--timeout-ms <ms>", `give up when no answer came within this long (default ${DEFAULT_TIMEOUT_MS})`)
      .addHelpText("after", HELP_AFTER),
  ).action(async (flags: ClientFlags & { service?: string; timeoutMs?: string }) => {
    const timeoutMs = flags.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : parseIntFlag("--timeout-ms", flags.timeoutMs, 1, 600_000);
    const address = resolveAddress(flags);
    if (address.includes(",")) throw new UsageError(`dex health checks one server: give one --address, got "${address}"`);
    const service = flags.service ?? "";
    const answer = await checkHealth({ address, tls: clientTls(flags), apiKey: resolveApiKey(flags) }, service, timeoutMs);
    if ("unreachable" in answer) {
      if (flags.json) printJson({ address, service, status: "UNREACHABLE", error: answer.unreachable });
      process.stderr.write(`dex: no answer from the dex server at ${address} (${connectFailure(answer.unreachable)})\n`);
      process.exitCode = HEALTH_EXIT.UNREACHABLE;
      return;
    }
    if (flags.json) printJson({ address, service, status: answer.status, ...(answer.detail ? { detail: answer.detail } : {}) });
    else process.stdout.write(`${answer.status}\n`);
    if (answer.status === "SERVING") return;
    if (!flags.json) process.stderr.write(`dex: ${notServingLine(address, service, answer)}\n`);
    process.exitCode = HEALTH_EXIT.NOT_SERVING;
  });
}

function notServingLine(address: string, service: string, answer: { status: HealthStatus; detail?: string }): string {
  if (answer.status === "NOT_SERVING") {
    return `the dex server at ${address} is up but not serving: it cannot reach its database, or it is shutting down (its log says which)`;
  }
  if (answer.status === "SERVICE_UNKNOWN") return `the dex server at ${address} does not serve "${service}"`;
  return `the dex server at ${address} answered ${answer.status}${answer.detail ? ` (${answer.detail})` : ""}`;
}

/**
 * One Check. Never throws for what the server says or for a server that is away (that is the
 * answer); only for unusable TLS settings, which are the caller's to fix.
 */
export async function checkHealth(target: HealthTarget, service: string, timeoutMs: number): Promise<HealthAnswer> {
  const grpc = await import("@grpc/grpc-js");
  const { BinaryReader, BinaryWriter, WireType } = await import("@bufbuild/protobuf/wire");
  const tls = target.tls;
  const credentials = tls
    ? grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert))
    : grpc.credentials.createInsecure();
  // A host without a port means dex's port, as for every other command (grpc-js alone would try 443).
  const address = /:\d+$/.test(target.address) ? target.address : `${target.address}:${DEFAULT_PORT}`;
  const channel = new grpc.Client(address, credentials, tls?.serverName ? { "grpc.ssl_target_name_override": tls.serverName } : {});
  const metadata = new grpc.Metadata();
  if (target.apiKey) metadata.set("authorization", `Bearer ${target.apiKey}`);
  // HealthCheckRequest { string service = 1; }: proto3 leaves an empty string out.
  const request = service ? new BinaryWriter().tag(1, WireType.LengthDelimited).string(service).finish() : new Uint8Array(0);
  try {
    return await new Promise<HealthAnswer>((resolve) => {
      channel.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (bytes: Uint8Array) => Buffer.from(bytes),
        (bytes: Buffer) => bytes,
        request,
        metadata,
        { deadline: Date.now() + timeoutMs },
        (err, response) => {
          if (!err) return resolve({ status: decodeStatus(new BinaryReader(response!)) });
          const detail = err.details || err.message;
          // grpc.health.v1: an unknown service is NOT_FOUND.
          if (err.code === grpc.status.NOT_FOUND) return resolve({ status: "SERVICE_UNKNOWN", detail });
          if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) return resolve({ unreachable: detail });
          resolve({ status: "UNKNOWN", detail: `${grpc.status[err.code] ?? err.code}: ${detail}` });
        },
      );
    });
  } finally {
    channel.close();
  }

  /** HealthCheckResponse { ServingStatus status = 1; }: absent means 0, UNKNOWN. */
  function decodeStatus(reader: InstanceType<typeof BinaryReader>): HealthStatus {
    let status = 0;
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field === 1 && wireType === WireType.Varint) status = reader.int32();
      else reader.skip(wireType);
    }
    return STATUS_NAMES[status] ?? "UNKNOWN";
  }
}

function pem(value: string | Buffer | undefined): Buffer | null {
  if (value === undefined) return null;
  return typeof value === "string" ? Buffer.from(value) : value;
}

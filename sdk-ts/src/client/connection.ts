/** One gRPC channel to the dex server(s) and the typed service clients over it. */
import * as grpc from "@grpc/grpc-js";
import { ClientService, ScheduleService, TaskQueueService, WorkerService, createServiceClient, type ServiceClient } from "@dex/proto";
import { sleep } from "../common/backoff.js";
import type { ResolvedConnection } from "./environment.js";

/** The address `dex dev` and `dex server` listen on by default. */
export const DEFAULT_ADDRESS = "127.0.0.1:7460";

/** PEM text, as a string or the bytes of a .pem file. */
export type Pem = string | Buffer;

/**
 * TLS towards the dex server (the `tls` option of createClient, createWorkflowWorker and
 * createActivityWorker). Without the option (and without DEX_TLS_* variables, see ConnectionOptions)
 * the connection is plaintext, which is what `dex dev` serves; `tls: {}` is TLS verified against
 * the system's root certificates.
 */
export interface TlsOptions {
  /** CA certificate(s) the server's certificate must chain to. Default: the system's root certificates. */
  ca?: Pem;
  /** This client's certificate (chain), for a server that requires client certificates (mutual TLS). Default: none. Needs `key`. */
  cert?: Pem;
  /** The private key of `cert`. Default: none. Needs `cert`. */
  key?: Pem;
  /**
   * The name the server's certificate must carry (and the SNI sent), when it differs from the host
   * in `address`, e.g. when connecting by IP to a certificate issued for a DNS name. Default: the host
   * part of `address` (the first one, when there are several: every server's certificate must then
   * carry that name, or give one they all carry here). (Connecting by IP address, Node prints a DEP0123 warning once per process:
   * grpc-js sends the IP as the TLS server name. The certificate is still checked against the IP.)
   */
  serverName?: string;
}

export interface Connection {
  /** The server address(es), for logs and errors ("a:1,b:2"). */
  readonly address: string;
  readonly client: ServiceClient<typeof ClientService>;
  readonly worker: ServiceClient<typeof WorkerService>;
  readonly queues: ServiceClient<typeof TaskQueueService>;
  readonly schedules: ServiceClient<typeof ScheduleService>;
  /**
   * Waits `ms` before a retry, or less: when the channel is not connected, the wait ends as soon as
   * it connects, so a caller resumes the moment a server is back rather than at the end of its
   * back-off. A failure on a connected channel waits the whole `ms`: waking on "connected" then
   * would spin against a server that answers but refuses.
   */
  pause(ms: number, signal?: AbortSignal): Promise<void>;
  close(): void;
}

/**
 * grpc-js reconnects a lost subchannel after a back-off growing to this, with ±20 % jitter; calls
 * fail fast until then. 5 s (the previous value) meant a worker could stay idle for 5 s after its
 * server was back; at 500 ms it resumes within about 0.6 s, for one refused TCP connect per client
 * every half second while a server is down.
 */
const MAX_RECONNECT_BACKOFF_MS = 500;

/**
 * Round robin over every address the target resolves to (several IPs, or a DNS name's records):
 * calls spread over the servers, and a server that goes away leaves the rotation when its
 * connection drops. pick_first also fails over, but puts all of a client's calls on one server.
 */
const SERVICE_CONFIG = JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] });

/** Opens the channel (lazily: nothing connects before the first call). */
export function connect(resolved: ResolvedConnection): Connection {
  const { target, tls, apiKey } = resolved;
  const interceptors = apiKey === undefined ? [] : [bearer(checkApiKey(apiKey))];
  const channel = new grpc.Client(target.target, channelCredentials(tls), {
    interceptors,
    // Histories can be large; the server pages them, but a page of big payloads can exceed 4 MB.
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    // No client keepalive pings: servers answer pings more frequent than they allow with GOAWAY
    // (too_many_pings). A killed server resets the connection; a silent one hits the poll deadline.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": MAX_RECONNECT_BACKOFF_MS,
    // A DNS name is re-resolved when its connections fail, at most this often (grpc-js default 30 s):
    // servers replaced under new IPs (a rolling deploy) are found within seconds.
    "grpc.dns_min_time_between_resolutions_ms": 5_000,
    "grpc.service_config": SERVICE_CONFIG,
    ...(tls?.serverName ? { "grpc.ssl_target_name_override": tls.serverName } : {}),
  });
  return {
    address: target.display,
    client: createServiceClient(ClientService, channel),
    worker: createServiceClient(WorkerService, channel),
    queues: createServiceClient(TaskQueueService, channel),
    schedules: createServiceClient(ScheduleService, channel),
    pause: (ms, signal) => pause(channel, ms, signal),
    close: () => channel.close(),
  };
}

function pause(channel: grpc.Client, ms: number, signal: AbortSignal | undefined): Promise<void> {
  let state: grpc.connectivityState;
  try {
    state = channel.getChannel().getConnectivityState(false);
  } catch {
    return sleep(ms, signal); // closed: the caller's next call fails on its own
  }
  if (state === grpc.connectivityState.READY) return sleep(ms, signal);
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      signal?.removeEventListener("abort", done);
      resolve();
    };
    signal?.addEventListener("abort", done, { once: true });
    // Ends with an error at the deadline or when the channel closes; either way the wait is over.
    channel.waitForReady(Date.now() + ms, done);
  });
}

function channelCredentials(tls: TlsOptions | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  if (typeof tls !== "object" || tls === null) throw new TypeError("tls must be an object ({ ca?, cert?, key?, serverName? })");
  // grpc-js would say "Private key must be given with accompanying certificate chain"; name our options instead.
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new TypeError("tls: cert and key go together (a client certificate needs its private key), got only " + (tls.cert === undefined ? "key" : "cert"));
  }
  try {
    return grpc.credentials.createSsl(pemBuffer(tls.ca), pemBuffer(tls.key), pemBuffer(tls.cert));
  } catch (err) {
    // OpenSSL's message ("PEM routines::no start line", "key values mismatch") says what; we say which option.
    throw new TypeError(`tls: the ca, cert or key is not usable: ${(err as Error).message}`, { cause: err });
  }
}

function pemBuffer(pem: Pem | undefined): Buffer | null {
  if (pem === undefined) return null;
  if (typeof pem === "string") return Buffer.from(pem);
  if (Buffer.isBuffer(pem)) return pem;
  throw new TypeError("tls: ca, cert and key must be PEM strings or Buffers");
}

/**
 * The key goes into each call's metadata through an interceptor rather than call credentials:
 * grpc-js refuses call credentials on a plaintext channel, and a key must work over both (a
 * plaintext link inside a trusted network, or TLS terminated in front of the server).
 */
function bearer(apiKey: string): grpc.Interceptor {
  const value = `Bearer ${apiKey}`;
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", value);
        next(metadata, listener);
      },
    });
}

/** A key that could never be sent as a header fails here, by name, not as a grpc-js error mid-call. */
function checkApiKey(apiKey: unknown): string {
  if (typeof apiKey !== "string" || !/^[\x21-\x7e]+$/.test(apiKey)) {
    throw new TypeError("apiKey must be the key text `dex auth create` printed (dex_..., no spaces or line breaks)");
  }
  return apiKey;
}

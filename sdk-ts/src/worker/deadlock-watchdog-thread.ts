/**
 * The body of the deadlock watchdog's thread (deadlock-watchdog.ts). It runs
 * as `eval` code in a worker thread: the function's source is sent, so it must
 * use nothing from this module's scope, only `require` of Node built-ins and
 * of the grpc-js path it is given. (It works the same from the compiled dist
 * and from TypeScript sources under a test runner, where no .js file exists.)
 *
 * While the main thread runs an activation it answers pings; when it has not
 * answered for `timeoutMs` since the activation began, its event loop is
 * blocked by workflow code that never yields. A blocked thread cannot be
 * interrupted from outside without corrupting Node's async-context stack
 * (decision 0014), so the watchdog reports the workflow task failed with the
 * request the main thread prepared, writes one line to stderr, and kills the
 * process: its other tasks go to other workers when their leases end.
 */
export interface WatchdogThreadData {
  timeoutMs: number;
  grpcPath: string;
  target: string;
  tls: { ca?: string | Uint8Array; cert?: string | Uint8Array; key?: string | Uint8Array; serverName?: string } | undefined;
  apiKey: string | undefined;
}

export type WatchdogMessage =
  | { kind: "start"; runId: string; workflowName: string; attempt: number; failRequest: Uint8Array }
  | { kind: "end" }
  | { kind: "pong" };

export function deadlockWatchdogThread(): void {
  const { parentPort, workerData } = require("node:worker_threads") as typeof import("node:worker_threads");
  const data = workerData as WatchdogThreadData;
  let current: (WatchdogMessage & { kind: "start" }) | undefined;
  let startedAt = 0;
  let lastPong = 0;
  let stopping = false;

  parentPort!.on("message", (message: WatchdogMessage) => {
    if (message.kind === "pong") lastPong = Date.now();
    else if (message.kind === "start") {
      current = message;
      startedAt = lastPong = Date.now();
    } else current = undefined;
  });

  setInterval(() => {
    if (!current || stopping) return;
    const now = Date.now();
    if (now - lastPong > data.timeoutMs && now - startedAt > data.timeoutMs) stop(current);
    else parentPort!.postMessage("ping");
  }, Math.max(10, Math.floor(data.timeoutMs / 4)));

  function stop(stuck: WatchdogMessage & { kind: "start" }): void {
    stopping = true;
    const seconds = data.timeoutMs / 1000;
    require("node:fs").writeSync(
      2,
      `[dex] ERROR workflow code of run ${stuck.runId} (workflow "${stuck.workflowName}", task attempt ${stuck.attempt}) ` +
        `has not yielded for more than ${seconds} s; the workflow task is reported failed and this worker process is stopped ` +
        `(a blocked event loop cannot be interrupted). Restart it under a supervisor; fix the workflow code.\n`,
    );
    const kill = (): void => void process.kill(process.pid, "SIGKILL");
    setTimeout(kill, 5_000).unref();
    try {
      const grpc = require(data.grpcPath) as typeof import("@grpc/grpc-js");
      const tls = data.tls;
      const toBuffer = (pem: string | Uint8Array | undefined) => (pem === undefined ? null : Buffer.from(pem));
      const credentials = tls ? grpc.credentials.createSsl(toBuffer(tls.ca), toBuffer(tls.key), toBuffer(tls.cert)) : grpc.credentials.createInsecure();
      const client = new grpc.Client(data.target, credentials, tls?.serverName ? { "grpc.ssl_target_name_override": tls.serverName } : {});
      const metadata = new grpc.Metadata();
      if (data.apiKey !== undefined) metadata.set("authorization", `Bearer ${data.apiKey}`);
      const same = (bytes: Buffer): Buffer => bytes;
      client.makeUnaryRequest("/dex.v1.WorkerService/FailWorkflowTask", same, same, Buffer.from(stuck.failRequest), metadata, { deadline: Date.now() + 4_000 }, kill);
    } catch {
      kill();
    }
  }
}

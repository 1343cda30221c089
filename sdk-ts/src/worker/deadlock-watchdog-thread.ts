/**
 * The body of the deadlock watchdog's thread (deadlock-watchdog.ts), as
 * JavaScript source run with `eval` in a worker thread. Source text rather
 * than a module file: it works the same from the compiled dist and from the
 * TypeScript sources under a test runner (where no .js file exists), and no
 * transpiler can add helpers to it (a function's `toString()` picked up
 * tsx's `__name`). It uses only `require` of Node built-ins and of the
 * grpc-js path it is given.
 *
 * The main thread describes the activation it runs in shared memory (no
 * message per task: that cost 15-40 µs a task, decision 0014): a counter,
 * odd while an activation runs, then the FailWorkflowTask request to send
 * and a label naming the run. While the counter is odd the thread pings the
 * main thread a few times per `timeoutMs`; when no answer came for
 * `timeoutMs` since this activation began, the main thread's event loop is
 * blocked by workflow code that never yields. A blocked thread cannot be
 * interrupted from outside without corrupting Node's async-context stack
 * (decision 0014), so the watchdog reports the workflow task failed with the
 * request the main thread prepared, writes one line to stderr, and kills the
 * process: its other tasks go to other workers when their leases end.
 */
export interface WatchdogThreadData {
  timeoutMs: number;
  /** Layout: WATCHDOG_HEADER Int32 slots (counter, request length, label length), then the bytes. */
  shared: SharedArrayBuffer;
  grpcPath: string;
  target: string;
  tls: { ca?: string | Uint8Array; cert?: string | Uint8Array; key?: string | Uint8Array; serverName?: string } | undefined;
  apiKey: string | undefined;
}

/**
 * Int32 slots before the bytes: [0] activation counter (odd while one runs), [1] request length (0: none
 * to send), [2] label length, [3] 1 when the code running answers a query (no workflow task to fail).
 */
export const WATCHDOG_HEADER = 4;

/** Run as `new Worker(deadlockWatchdogSource, { eval: true, workerData: WatchdogThreadData })`. */
export const deadlockWatchdogSource = `
"use strict";
const { parentPort, workerData: data } = require("node:worker_threads");
const state = new Int32Array(data.shared, 0, ${WATCHDOG_HEADER});
const bytes = new Uint8Array(data.shared, ${WATCHDOG_HEADER} * 4);
let seen = 0;
let seenAt = 0;
let lastPong = 0;
let stopping = false;

parentPort.on("message", () => {
  lastPong = Date.now();
});

const tickMs = Math.max(10, Math.floor(data.timeoutMs / 4));
let lastTick = Date.now();

setInterval(() => {
  const now = Date.now();
  // This thread did not run for a while (the process was suspended, the machine starved it): the main
  // thread could not answer pings it never got, so its silence starts now.
  if (now - lastTick > 2 * tickMs) lastPong = now;
  lastTick = now;
  const counter = Atomics.load(state, 0);
  if (stopping || counter % 2 === 0) return;
  if (counter !== seen) {
    seen = counter;
    seenAt = lastPong = now;
  }
  if (now - lastPong > data.timeoutMs && now - seenAt > data.timeoutMs) stop();
  else parentPort.postMessage(0);
}, tickMs);

function stop() {
  stopping = true;
  // The main thread is blocked: nothing writes these any more.
  const requestLength = Atomics.load(state, 1);
  const label = Buffer.from(bytes.subarray(requestLength, requestLength + Atomics.load(state, 2))).toString("utf8");
  const query = Atomics.load(state, 3) === 1;
  require("node:fs").writeSync(
    2,
    "[dex] ERROR workflow code of " + label + " has not yielded for more than " + data.timeoutMs / 1000 + " s; " +
      (query ? "" : "the workflow task is reported failed and ") + "this worker process is stopped " +
      "(a blocked event loop cannot be interrupted). Restart it under a supervisor; fix the workflow code.\\n",
  );
  const kill = () => process.kill(process.pid, "SIGKILL");
  // A query has no task token: nothing to report to the server.
  if (requestLength === 0) return kill();
  setTimeout(kill, 5000).unref();
  try {
    const grpc = require(data.grpcPath);
    const tls = data.tls;
    const pem = (value) => (value === undefined ? null : Buffer.from(value));
    const credentials = tls ? grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert)) : grpc.credentials.createInsecure();
    const client = new grpc.Client(data.target, credentials, tls && tls.serverName ? { "grpc.ssl_target_name_override": tls.serverName } : {});
    const metadata = new grpc.Metadata();
    if (data.apiKey !== undefined) metadata.set("authorization", "Bearer " + data.apiKey);
    const same = (value) => value;
    const request = Buffer.from(bytes.subarray(0, requestLength));
    client.makeUnaryRequest("/dex.v1.WorkerService/FailWorkflowTask", same, same, request, metadata, { deadline: Date.now() + 4000 }, kill);
  } catch {
    kill();
  }
}
`;

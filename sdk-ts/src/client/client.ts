/** The dex client: start workflow runs and work with them. */
import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  InstanceIdConflictPolicy,
  InstanceIdReusePolicy,
  type ClientService,
  type ServiceClient,
  type StartWorkflowRequestSchema,
  type TaskQueueService,
  type WorkerService,
} from "@dex/proto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RunStatusName } from "../common/errors.js";
import { encodePayload } from "../common/payload.js";
import { toProtoDuration, type Duration } from "../common/duration.js";
import type { Workflow, WorkflowInput, WorkflowOutput } from "../workflow/types.js";
import { connect } from "./connection.js";
import { statusFromName, toRunSummary, type RunSummary } from "./convert.js";
import { resolveConnection, type ConnectionOptions } from "./environment.js";
import { createHandle, type Caller, type WorkflowHandle } from "./handle.js";
import { createScheduleClient, type ScheduleClient } from "./schedule-client.js";
import { clientRetryable, clientRetryableUnsent, retryPolicy, withRetry, type ClientRetryOptions } from "./retry.js";
import { registerEagerStarter, reserveEagerStart } from "../worker/eager-workflow-tasks.js";
import { interceptStart, type ClientInterceptor } from "./interceptors.js";

/** `address`, `tls` and `apiKey` (see ConnectionOptions) fall back to DEX_ADDRESS, DEX_TLS_* and DEX_API_KEY. */
export interface ClientOptions extends ConnectionOptions {
  /**
   * Retries of calls that fail without an answer (UNAVAILABLE: no server, or a server restarting
   * or whose database is away; DEADLINE_EXCEEDED; CANCELLED by a server shutting down) or that the
   * server rolled back (ABORTED), so a restart does not reach the caller. Every method retries
   * (start, sendEventWithStart, list, and the handle's result, describe, history, sendEvent,
   * cancel, terminate; not `raw`): each is safe to repeat (see their docs); through a handle made
   * from an instance id, sendEvent, cancel and terminate retry only failures that reached no server. Default
   * `{ maxElapsed: "30s", initialInterval: "100ms", maxInterval: "1s" }`; `false`: no retries.
   */
  retry?: ClientRetryOptions | false;
  /** Hooks around each start (e.g. `@dex/opentelemetry`'s tracing, which sends the trace context); first is outermost. Default none. */
  interceptors?: ClientInterceptor[];
}

export interface StartOptions<I = unknown> {
  /** Your id for this unit of work; at most one open run per instance id. Required. */
  instanceId: string;
  /** The workflow's input (JSON-encoded). */
  input?: I;
  /** Workflow task queue. Default "default". */
  taskQueue?: string;
  /** Labels to filter runs by. */
  labels?: Record<string, string>;
  /** 0 to 100, higher runs sooner. Default 50. */
  priority?: number;
  /** Idempotency key. Default: a random UUID, so the SDK's own retries of this call are idempotent. */
  requestId?: string;
  /**
   * When the instance id already has an open run: "fail" (the default) rejects with a DexError
   * ALREADY_EXISTS; "use-existing" returns a handle on the open run instead.
   */
  conflictPolicy?: ConflictPolicy;
  /**
   * Whether a new run may follow ended runs of the same instance id: "allow" (the default);
   * "allow-if-failed" only if the latest run failed, was cancelled or terminated; "reject" never.
   * A refused start rejects with a DexError ALREADY_EXISTS.
   */
  reusePolicy?: ReusePolicy;
  /** Runs sharing a concurrency key run at most `concurrencyLimit` at once; the rest wait in CREATED. */
  concurrencyKey?: string;
  /** Limit for `concurrencyKey`. Default 1. */
  concurrencyLimit?: number;
  /**
   * Eager workflow start (`start` only): when a workflow worker of this process polls the run's queue
   * on the same server address and has a free slot, the new run's first workflow task comes back in
   * the start's answer and runs on that worker at once, saving its poll. Otherwise (no such worker,
   * no free slot, the run not new, its queue paused or full) the start is an ordinary one. Needs
   * an API key that may also take tasks (role admin when the server requires keys; a client key is
   * refused with PERMISSION_DENIED). Workflow workers leave room for eager starts once a client of
   * their process asked for one, so the first such start may still go through a poll. Default false.
   */
  eager?: boolean;
  /**
   * How long the run may stay open (milliseconds or "30s", "1h", "7d"). When it passes, the run ends
   * TIMED_OUT whatever it is doing (no worker for its workflow, a workflow task failing on every
   * attempt, a long sleep) and `result()` rejects with a WorkflowFailedError of status "TIMED_OUT".
   * Per run: a run continued as new gets it afresh. Default: no limit.
   */
  runTimeout?: Duration;
  /**
   * The lease of each of the run's workflow tasks, 1 s to 10 min: a worker that has not completed a
   * task by then loses it to another worker. Kept by continue-as-new. Default 10 s.
   */
  workflowTaskTimeout?: Duration;
}

export type ConflictPolicy = "fail" | "use-existing";
export type ReusePolicy = "allow" | "allow-if-failed" | "reject";

/** `client.sendEventWithStart` options: the start, plus the event to deliver. */
export interface SendEventWithStartOptions<I = unknown> extends StartOptions<I> {
  /**
   * The event id: its dedup key, unique per instance across continue-as-new. Required unless
   * `eventName` is given; then the default is a random UUID (this call's retries deliver once).
   */
  eventId?: string;
  /** The event name the workflow waits for. Default: `eventId` (the form before names existed). */
  eventName?: string;
  /** The event's payload (JSON-encoded). */
  payload?: unknown;
}

export interface SendEventWithStartResult<O = unknown> {
  /** The run that received the event: the one started, or the instance's open run. */
  handle: WorkflowHandle<O>;
  /** True when this call started the run. */
  started: boolean;
  /** True when the run had already received this event id (nothing was delivered). */
  duplicate: boolean;
  /** The event's id (the dedup key). */
  eventId: string;
}

export interface ListRunsFilter {
  workflowName?: string;
  status?: RunStatusName | RunStatusName[];
  instanceId?: string;
  /** Only runs on this workflow task queue. */
  taskQueue?: string;
  labels?: Record<string, string>;
  createdAfter?: Date;
  createdBefore?: Date;
  /** Default 100, at most 1000. */
  pageSize?: number;
  /** `nextPageToken` of the previous page. */
  pageToken?: string;
}

export interface Client {
  start<W extends Workflow>(
    workflow: W | string,
    options: StartOptions<WorkflowInput<W>>,
  ): Promise<WorkflowHandle<WorkflowOutput<W>>>;
  /**
   * Starts a run unless the instance id has an open run, then delivers the event to the run, in one
   * transaction ("signal-with-start"): concurrent calls for one instance id create exactly one run.
   */
  sendEventWithStart<W extends Workflow>(
    workflow: W | string,
    options: SendEventWithStartOptions<WorkflowInput<W>>,
  ): Promise<SendEventWithStartResult<WorkflowOutput<W>>>;
  getHandle<O = unknown>(ref: { runId: string } | { instanceId: string }): WorkflowHandle<O>;
  list(filter?: ListRunsFilter): Promise<{ runs: RunSummary[]; nextPageToken?: string }>;
  /**
   * Runs `fn` through this client's retry path (the `retry` option): for `raw` calls that are safe
   * to repeat (reads, or writes the server deduplicates), which `raw` alone does not retry.
   */
  retrying<T>(fn: () => Promise<T>): Promise<T>;
  /** Schedules: `schedule.create({...})`, `schedule.getHandle(id)` (describe, pause, trigger, ...), `schedule.list()`. */
  readonly schedule: ScheduleClient;
  /** Low-level, typed access to the three services (errors are DexError); not retried (see `retrying`). */
  readonly raw: {
    client: ServiceClient<typeof ClientService>;
    worker: ServiceClient<typeof WorkerService>;
    queues: ServiceClient<typeof TaskQueueService>;
  };
  /** Closes the connection. */
  close(): void;
}

export function createClient(options: ClientOptions = {}): Client {
  const policy = retryPolicy(options.retry);
  const interceptors = options.interceptors;
  const connection = connect(resolveConnection(options));
  /** Set once this client asked for an eager start: workflow workers of this process leave room (eager-workflow-tasks.ts). */
  let unregisterStarter: (() => void) | undefined;
  const caller: Caller = {
    connection,
    call: (fn, signal, unsentOnly) =>
      withRetry(fn, { policy, signal, pause: connection.pause, retryable: unsentOnly ? clientRetryableUnsent : clientRetryable }),
  };
  return {
    raw: { client: connection.client, worker: connection.worker, queues: connection.queues },
    retrying: (fn) => caller.call(() => fn()),
    schedule: createScheduleClient(caller),

    async start(workflow, start) {
      const request = startRequest(workflow, start);
      if (start.eager) unregisterStarter ??= registerEagerStarter(connection.address);
      const eager = start.eager ? reserveEagerStart(connection.address, request.taskQueue || "default") : undefined;
      if (eager) request.eager = { workerId: eager.workerId };
      // The request id, the same on every try, makes a retry of a start that did land return that
      // run (started = false) instead of starting another, even after the run has ended. (An eager
      // task in a lost answer runs elsewhere once its lease ends, as any task whose worker vanished.)
      let response;
      try {
        const info = { kind: "start", workflowName: request.workflowName ?? "", instanceId: start.instanceId, taskQueue: request.taskQueue || "default" } as const;
        response = await interceptStart(interceptors, info, (metadata) =>
          caller.call(() => connection.client.startWorkflow(request, metadata ? { metadata } : undefined)),
        );
      } finally {
        eager?.settle(response?.eagerTask);
      }
      return createHandle(caller, { runId: response.runId, instanceId: start.instanceId });
    },

    async sendEventWithStart(workflow, options) {
      const named = typeof options.eventName === "string" && options.eventName.length > 0;
      if (!named && (typeof options.eventId !== "string" || options.eventId.length === 0)) {
        throw new TypeError("sendEventWithStart: eventName or eventId is required (a non-empty string)");
      }
      const eventId = options.eventId || randomUUID();
      const request = {
        start: startRequest(workflow, options),
        eventId,
        eventName: options.eventName ?? "",
        payload: options.payload === undefined ? undefined : encodePayload(options.payload),
      };
      // Safe to retry: the start carries a request id and the event id is delivered at most once.
      // A retry of a call that did land reports started = false and duplicate = true.
      const info = { kind: "sendEventWithStart", workflowName: request.start.workflowName ?? "", instanceId: options.instanceId, taskQueue: request.start.taskQueue || "default" } as const;
      const response = await interceptStart(interceptors, info, (metadata) =>
        caller.call(() => connection.client.sendEventWithStart(request, metadata ? { metadata } : undefined)),
      );
      return {
        handle: createHandle(caller, { runId: response.runId, instanceId: options.instanceId }),
        started: response.started,
        duplicate: response.duplicate,
        eventId,
      };
    },

    getHandle(ref) {
      return "runId" in ref ? createHandle(caller, { runId: ref.runId }) : createHandle(caller, { instanceId: ref.instanceId });
    },

    async list(filter = {}) {
      const statuses = filter.status === undefined ? [] : [filter.status].flat().map(statusFromName);
      const response = await caller.call(() =>
        connection.client.listRuns({
          workflowName: filter.workflowName ?? "",
          statuses,
          instanceId: filter.instanceId ?? "",
          labels: filter.labels ?? {},
          createdAfter: filter.createdAfter ? timestampFromDate(filter.createdAfter) : undefined,
          createdBefore: filter.createdBefore ? timestampFromDate(filter.createdBefore) : undefined,
          pageSize: filter.pageSize ?? 0,
          pageToken: filter.pageToken ?? "",
          taskQueue: filter.taskQueue ?? "",
        }),
      );
      const result: { runs: RunSummary[]; nextPageToken?: string } = { runs: response.runs.map(toRunSummary) };
      if (response.nextPageToken) result.nextPageToken = response.nextPageToken;
      return result;
    },

    close: () => {
      unregisterStarter?.();
      connection.close();
    },
  };
}

const conflictPolicies: Record<ConflictPolicy, InstanceIdConflictPolicy> = {
  fail: InstanceIdConflictPolicy.FAIL,
  "use-existing": InstanceIdConflictPolicy.USE_EXISTING,
};

const reusePolicies: Record<ReusePolicy, InstanceIdReusePolicy> = {
  allow: InstanceIdReusePolicy.ALLOW,
  "allow-if-failed": InstanceIdReusePolicy.ALLOW_IF_FAILED,
  reject: InstanceIdReusePolicy.REJECT,
};

function policy<K extends string, V>(what: string, table: Record<K, V>, value: K | undefined): V | undefined {
  if (value === undefined) return undefined;
  if (!Object.hasOwn(table, value)) {
    throw new TypeError(`${what} must be one of ${Object.keys(table).map((k) => JSON.stringify(k)).join(", ")}, got ${JSON.stringify(value)}`);
  }
  return table[value];
}

function startRequest(workflow: Workflow | string, start: StartOptions): MessageInitShape<typeof StartWorkflowRequestSchema> {
  const workflowName = typeof workflow === "string" ? workflow : workflow.name;
  if (!workflowName) {
    throw new TypeError("cannot start an anonymous workflow function: pass its registered name instead");
  }
  return {
    workflowName,
    instanceId: start.instanceId,
    taskQueue: start.taskQueue ?? "",
    input: encodePayload(start.input),
    labels: start.labels ?? {},
    priority: start.priority,
    requestId: start.requestId ?? randomUUID(),
    conflictPolicy: policy("conflictPolicy", conflictPolicies, start.conflictPolicy),
    reusePolicy: policy("reusePolicy", reusePolicies, start.reusePolicy),
    concurrencyKey: start.concurrencyKey ?? "",
    concurrencyLimit: start.concurrencyLimit ?? 0,
    runTimeout: toProtoDuration(start.runTimeout),
    workflowTaskTimeout: toProtoDuration(start.workflowTaskTimeout),
  };
}

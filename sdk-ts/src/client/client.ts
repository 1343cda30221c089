/** The dex client: start workflow runs and work with them. */
import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ClientService, ServiceClient, TaskQueueService, WorkerService } from "@dex/proto";
import type { RunStatusName } from "../common/errors.js";
import { encodePayload } from "../common/payload.js";
import type { Workflow, WorkflowInput, WorkflowOutput } from "../workflow/types.js";
import { connect, DEFAULT_ADDRESS } from "./connection.js";
import { statusFromName, toRunSummary, type RunSummary } from "./convert.js";
import { createHandle, type WorkflowHandle } from "./handle.js";
import { withRetry } from "./retry.js";

export interface ClientOptions {
  /** host:port of the dex server. Default "127.0.0.1:7460" (DEFAULT_ADDRESS). */
  address?: string;
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
}

export interface ListRunsFilter {
  workflowName?: string;
  status?: RunStatusName | RunStatusName[];
  instanceId?: string;
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
  getHandle<O = unknown>(ref: { runId: string } | { instanceId: string }): WorkflowHandle<O>;
  list(filter?: ListRunsFilter): Promise<{ runs: RunSummary[]; nextPageToken?: string }>;
  /** Low-level, typed access to the three services (errors are DexError). */
  readonly raw: {
    client: ServiceClient<typeof ClientService>;
    worker: ServiceClient<typeof WorkerService>;
    queues: ServiceClient<typeof TaskQueueService>;
  };
  /** Closes the connection. */
  close(): void;
}

export function createClient(options: ClientOptions = {}): Client {
  const connection = connect(options.address ?? DEFAULT_ADDRESS);
  return {
    raw: { client: connection.client, worker: connection.worker, queues: connection.queues },

    async start(workflow, start) {
      const workflowName = typeof workflow === "string" ? workflow : workflow.name;
      if (!workflowName) {
        throw new TypeError("cannot start an anonymous workflow function: pass its registered name instead");
      }
      const request = {
        workflowName,
        instanceId: start.instanceId,
        taskQueue: start.taskQueue ?? "",
        input: encodePayload(start.input),
        labels: start.labels ?? {},
        priority: start.priority,
        requestId: start.requestId ?? randomUUID(),
      };
      const response = await withRetry(() => connection.client.startWorkflow(request));
      return createHandle(connection, { runId: response.runId, instanceId: start.instanceId });
    },

    getHandle(ref) {
      return "runId" in ref ? createHandle(connection, { runId: ref.runId }) : createHandle(connection, { instanceId: ref.instanceId });
    },

    async list(filter = {}) {
      const statuses = filter.status === undefined ? [] : [filter.status].flat().map(statusFromName);
      const response = await withRetry(() =>
        connection.client.listRuns({
          workflowName: filter.workflowName ?? "",
          statuses,
          instanceId: filter.instanceId ?? "",
          labels: filter.labels ?? {},
          createdAfter: filter.createdAfter ? timestampFromDate(filter.createdAfter) : undefined,
          createdBefore: filter.createdBefore ? timestampFromDate(filter.createdBefore) : undefined,
          pageSize: filter.pageSize ?? 0,
          pageToken: filter.pageToken ?? "",
        }),
      );
      const result: { runs: RunSummary[]; nextPageToken?: string } = { runs: response.runs.map(toRunSummary) };
      if (response.nextPageToken) result.nextPageToken = response.nextPageToken;
      return result;
    },

    close: () => connection.close(),
  };
}

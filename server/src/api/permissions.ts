/**
 * Which API key roles may call which RPC: the one table every dex.v1 call is
 * checked against when the server requires keys (api/auth.ts). A method
 * missing here fails the server's start (and server/test/auth-permissions.test.ts),
 * so a new RPC cannot go out unguarded. The health and reflection services
 * are not dex.v1 services and stay open: load balancers and probes carry no key.
 *
 * - worker: the worker protocol, plus GetRunHistory, which a workflow worker
 *   calls to replay a run it does not hold in its cache.
 * - client: what an application does with runs (start, events, read, cancel),
 *   and ListTaskQueues, a read that `dex queue list` and dashboards need.
 * - client and admin: every ScheduleService call (a schedule only starts runs,
 *   which a client may do; as in Temporal, applications manage their schedules).
 * - admin: everything, including TerminateRun (ends a run without letting its
 *   code react), DeleteRun (destroys an ended run's history) and every change
 *   to task queues.
 *
 * `queue` says where a call names its task queue, for worker keys limited to
 * some queues (`dex auth create --queue`): the polled queue, the queue inside
 * a task token, the workflow queue of the run whose history is read, or that
 * of the query task an answer names (RespondQueryTask).
 * "activity-token-items" (ReportActivityTasks) is checked per item by the
 * handler (api/activity-reports.ts): a refused item is answered
 * PERMISSION_DENIED on its own while the call's other items go through.
 */
import type { ApiKeyRole } from "../engine/api-keys.js";

export type QueueScope = "poll" | "workflow-token" | "activity-token" | "activity-token-items" | "run" | "query";

export interface MethodRule {
  readonly roles: readonly ApiKeyRole[];
  readonly queue?: QueueScope;
}

const CLIENT: readonly ApiKeyRole[] = ["client", "admin"];
const WORKER: readonly ApiKeyRole[] = ["worker", "admin"];
const ADMIN: readonly ApiKeyRole[] = ["admin"];

/** Full gRPC method name ("/package.Service/Method") -> who may call it. */
export const METHOD_RULES: Readonly<Record<string, MethodRule>> = {
  // An eager start (StartWorkflowRequest.eager) hands a client key the new run's first workflow task.
  // It reveals nothing the caller did not send (the task holds the run_started event), and the token
  // is useless to a client key: completing or failing the task needs a worker key (the worker's own
  // connection, in the caller's process). So a client key may ask for it: one key per role, and a
  // process with a client key and a worker key, is the set-up eager start is for.
  "/dex.v1.ClientService/StartWorkflow": { roles: CLIENT },
  "/dex.v1.ClientService/SendEvent": { roles: CLIENT },
  "/dex.v1.ClientService/SendEventWithStart": { roles: CLIENT },
  "/dex.v1.ClientService/UpdateRun": { roles: CLIENT },
  "/dex.v1.ClientService/DescribeRun": { roles: CLIENT },
  "/dex.v1.ClientService/GetRunHistory": { roles: ["worker", "client", "admin"], queue: "run" },
  "/dex.v1.ClientService/GetRunResult": { roles: CLIENT },
  "/dex.v1.ClientService/ListRuns": { roles: CLIENT },
  "/dex.v1.ClientService/CancelRun": { roles: CLIENT },
  "/dex.v1.ClientService/TerminateRun": { roles: ADMIN },
  // Irreversible: the run's history is gone for everyone (decision 0021).
  "/dex.v1.ClientService/DeleteRun": { roles: ADMIN },
  // ResetRun terminates an open run without letting its code react, as TerminateRun does.
  "/dex.v1.ClientService/ResetRun": { roles: ADMIN },
  // A query reads a run's state through its code, like DescribeRun; nothing is written.
  "/dex.v1.ClientService/QueryRun": { roles: CLIENT },

  "/dex.v1.WorkerService/PollWorkflowTasks": { roles: WORKER, queue: "poll" },
  "/dex.v1.WorkerService/CompleteWorkflowTask": { roles: WORKER, queue: "workflow-token" },
  "/dex.v1.WorkerService/FailWorkflowTask": { roles: WORKER, queue: "workflow-token" },
  "/dex.v1.WorkerService/PollActivityTasks": { roles: WORKER, queue: "poll" },
  "/dex.v1.WorkerService/CompleteActivityTask": { roles: WORKER, queue: "activity-token" },
  "/dex.v1.WorkerService/FailActivityTask": { roles: WORKER, queue: "activity-token" },
  "/dex.v1.WorkerService/HeartbeatActivityTask": { roles: WORKER, queue: "activity-token" },
  "/dex.v1.WorkerService/ReportActivityTasks": { roles: WORKER, queue: "activity-token-items" },
  // "query": the workflow queue of the query task the answer names (engine/query-tasks.ts).
  "/dex.v1.WorkerService/PollQueryTasks": { roles: WORKER, queue: "poll" },
  "/dex.v1.WorkerService/RespondQueryTask": { roles: WORKER, queue: "query" },

  "/dex.v1.TaskQueueService/CreateTaskQueue": { roles: ADMIN },
  "/dex.v1.TaskQueueService/UpdateTaskQueue": { roles: ADMIN },
  "/dex.v1.TaskQueueService/PauseTaskQueue": { roles: ADMIN },
  "/dex.v1.TaskQueueService/ResumeTaskQueue": { roles: ADMIN },
  "/dex.v1.TaskQueueService/ListTaskQueues": { roles: CLIENT },
  "/dex.v1.TaskQueueService/DeleteTaskQueue": { roles: ADMIN },

  "/dex.v1.ScheduleService/CreateSchedule": { roles: CLIENT },
  "/dex.v1.ScheduleService/UpdateSchedule": { roles: CLIENT },
  "/dex.v1.ScheduleService/DescribeSchedule": { roles: CLIENT },
  "/dex.v1.ScheduleService/ListSchedules": { roles: CLIENT },
  "/dex.v1.ScheduleService/PauseSchedule": { roles: CLIENT },
  "/dex.v1.ScheduleService/ResumeSchedule": { roles: CLIENT },
  "/dex.v1.ScheduleService/TriggerSchedule": { roles: CLIENT },
  "/dex.v1.ScheduleService/BackfillSchedule": { roles: CLIENT },
  "/dex.v1.ScheduleService/DeleteSchedule": { roles: CLIENT },
};

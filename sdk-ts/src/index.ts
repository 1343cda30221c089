/**
 * @dex/sdk: the dex TypeScript SDK.
 *
 * - Client: `createClient()` starts runs (and signal-with-start) and returns handles (result, describe,
 *   history, events, cancel, terminate).
 * - Authoring: a workflow is `async (ctx, input) => output`; an activity is `async (input, ctx) => output`.
 * - Workers: `createWorkflowWorker()` replays workflows, `createActivityWorker()` runs activities.
 */

// Client
export { createClient } from "./client/client.js";
export type {
  Client,
  ClientOptions,
  ConflictPolicy,
  ListRunsFilter,
  ReusePolicy,
  SendEventWithStartOptions,
  SendEventWithStartResult,
  StartOptions,
} from "./client/client.js";
export { DEFAULT_ADDRESS } from "./client/connection.js";
export type { Pem, TlsOptions } from "./client/connection.js";
export type { ConnectionOptions } from "./client/environment.js";
export type { ClientRetryOptions } from "./client/retry.js";
export type { ResetOptions, ResetTarget, SendEventResult, WorkflowHandle } from "./client/handle.js";
export { WorkflowUpdateFailedError, WorkflowUpdateRejectedError, type UpdateOptions } from "./client/update.js";
export type {
  CreateScheduleOptions,
  OverlapPolicy,
  ScheduleAction,
  ScheduleClient,
  ScheduleDefinition,
  ScheduleDescription,
  ScheduleHandle,
  ScheduleSkip,
  ScheduleSpecOptions,
} from "./client/schedule-client.js";
export type {
  PendingActivityInfo,
  PendingChildRunInfo,
  PendingEventWaitInfo,
  PendingTimerInfo,
  PendingWorkflowTaskInfo,
  ReceivedEventCountInfo,
  RunDescription,
  RunSummary,
} from "./client/convert.js";

// Authoring
export type {
  Activity,
  ActivityContext,
  ActivityInfo,
  ActivityInput,
  ActivityOptions,
  ActivityOutput,
  ActivityProxy,
  CancellationScope,
  ChildOptions,
  ConditionOptions,
  UpdateHandler,
  UpdateHandlerOptions,
  ContinueAsNewOptions,
  EventWaitOptions,
  RetryOptions,
  Workflow,
  WorkflowContext,
  WorkflowInfo,
  WorkflowInput,
  WorkflowOutput,
} from "./workflow/types.js";
export type { EventHandler, ReceivedEventInfo } from "./workflow/events.js";

// Errors and failures
export {
  ActivityFailure,
  ApplicationFailure,
  CancelledFailure,
  ChildWorkflowFailure,
  ChildWorkflowStartFailure,
  DeterminismViolationError,
  DexError,
  EventWaitTimeoutError,
  NonDeterminismError,
  TimeoutFailure,
  WorkflowFailedError,
} from "./common/errors.js";
export type { ApplicationFailureOptions, NonDeterminismDetails, RunStatusName, TimeoutType } from "./common/errors.js";
export type { ErrorReasonName } from "./common/errors.js";
export type { FailureInfo } from "./common/failure.js";
export { setWorkflowOptions } from "./workflow/failure-rule.js";
export type { ErrorMatcher, WorkflowDefinitionOptions } from "./workflow/failure-rule.js";

// Values
export { decodePayload, encodePayload, PayloadError } from "./common/payload.js";
export { parseDuration } from "./common/duration.js";
export type { Duration } from "./common/duration.js";
export { createConsoleLogger } from "./common/logger.js";
export type { ConsoleLoggerOptions, Logger, LogLevel } from "./common/logger.js";

// Workers
export { createWorkflowWorker } from "./worker/workflow-worker.js";
export type { WorkflowWorkerOptions } from "./worker/workflow-worker.js";
export { createActivityWorker } from "./worker/activity-worker.js";
export type { ActivityWorkerOptions } from "./worker/activity-worker.js";
export type { Worker } from "./worker/worker.js";
export { replayHistory } from "./worker/replay-history.js";
export type { RecordedHistory } from "./worker/replay-history.js";
export { replayRuns, REPLAY_DEFAULTS } from "./worker/replay-runs.js";
export type { ReplayRunsFilter, ReplayRunsOptions } from "./worker/replay-runs.js";
export { replayHistoryFiles } from "./worker/replay-files.js";
export type { ReplayHistoryFilesOptions } from "./worker/replay-files.js";
export type { RunReplayFailure, RunReplayResult, RunReplayStatus } from "./worker/replay-run.js";
export type { ReplayCheck, ReplaySummary, WorkflowReplaySummary } from "./worker/replay-report.js";

// Interceptors: hooks for instrumentation such as @dex/opentelemetry
export type { ClientInterceptor, StartCallInfo, StartCallResult } from "./client/interceptors.js";
export type { ActivityAttemptInfo, CompletionInfo, WorkerInterceptor, WorkflowTaskInfo } from "./worker/interceptors.js";

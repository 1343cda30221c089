/**
 * The UI's dex clients: the public dex.v1 services over Connect (JSON), on the origin that served
 * the page. The API key, entered once, stays in sessionStorage: gone when the tab closes.
 */
import { createClient, ConnectError, Code, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
// The generated code itself, not @dex/proto's index: that also exports the grpc-js glue, Node only.
import { ClientService } from "../../../proto/src/gen/dex/v1/client_service_pb.js";
import { ScheduleService } from "../../../proto/src/gen/dex/v1/schedule_service_pb.js";
import { TaskQueueService } from "../../../proto/src/gen/dex/v1/task_queue_service_pb.js";

const KEY_ITEM = "dex.apiKey";

export function apiKey(): string | null {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setApiKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

const withKey: Interceptor = (next) => (request) => {
  const key = apiKey();
  if (key) request.header.set("authorization", `Bearer ${key}`);
  return next(request);
};

const transport = createConnectTransport({ baseUrl: location.origin, interceptors: [withKey] });

export const client = createClient(ClientService, transport);
export const queues = createClient(TaskQueueService, transport);
export const schedules = createClient(ScheduleService, transport);

/** The message to show for a failed call: the server's own words, which say what to fix. */
export function errorText(err: unknown): string {
  const e = ConnectError.from(err);
  // As the CLI and the gRPC docs name them: PermissionDenied -> PERMISSION_DENIED.
  const name = (Code[e.code] ?? "Unknown").replace(/(?<=[a-z])(?=[A-Z])/g, "_").toUpperCase();
  return `${name}: ${e.rawMessage}`;
}

export function isUnauthenticated(err: unknown): boolean {
  return ConnectError.from(err).code === Code.Unauthenticated;
}

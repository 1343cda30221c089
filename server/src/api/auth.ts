/**
 * API-key checks in front of every dex.v1 handler, when the server requires
 * keys: the key comes in the `authorization: Bearer <key>` metadata header;
 * no usable key answers UNAUTHENTICATED, a role the method's rule
 * (permissions.ts) does not list, or a queue a limited worker key may not use,
 * PERMISSION_DENIED. Both messages say what to do. The checks run before the
 * handler, so a refused call changes nothing.
 */
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { DexError, type CallContext, type ServiceHandlers } from "@dex/proto";
import type { Engine } from "../engine/context.js";
import { HOW_TO_GET_A_KEY, type Authenticator, type Principal } from "../engine/authenticator.js";
import { requireRun } from "../engine/runs.js";
import { queueOfQuery } from "../engine/query-tasks.js";
import type { Logger } from "../logger.js";
import { runSelector } from "./common.js";
import { METHOD_RULES, type MethodRule, type QueueScope } from "./permissions.js";
import { decodeActivityTaskToken, decodeWorkflowTaskToken } from "./task-token.js";

export interface AuthDeps {
  authenticator: Authenticator;
  engine: Engine;
  logger: Logger;
}

/** The handlers of `service`, each checking the caller's key first. Throws at once for a method without a rule. */
export function withApiKeys<S extends GenService<GenServiceMethods>>(
  service: S,
  handlers: ServiceHandlers<S>,
  deps: AuthDeps,
): ServiceHandlers<S> {
  const out: Record<string, unknown> = {};
  for (const method of service.methods) {
    const path = `/${service.typeName}/${method.name}`;
    const rule = METHOD_RULES[path];
    if (!rule) throw new Error(`${path} has no rule in server/src/api/permissions.ts: say which roles may call it`);
    const handler = (handlers as Record<string, (req: unknown, context: CallContext) => Promise<unknown>>)[method.localName]!;
    const name = path.slice(1);
    out[method.localName] = async (request: unknown, context: CallContext) => {
      const principal = await authenticate(context, deps.authenticator, name, deps.logger);
      authorize(principal, rule, name, context, deps.logger);
      if (principal.queues && rule.queue === "activity-token-items") itemQueueLimits.set(context, { principal, queues: principal.queues, method: name });
      else if (principal.queues && rule.queue) await checkQueue(principal, principal.queues, rule.queue, request, name, context, deps);
      if (principal.queues) withoutForeignEagerOffers(request, principal.queues);
      return handler(request, context);
    };
  }
  return out as ServiceHandlers<S>;
}

async function authenticate(context: CallContext, authenticator: Authenticator, method: string, logger: Logger): Promise<Principal> {
  const values = context.metadata.get("authorization");
  try {
    if (values.length === 0) {
      throw new DexError(
        "UNAUTHENTICATED",
        `this dex server requires an API key: send the metadata header "authorization: Bearer <key>" ` +
          `(SDK: the apiKey option or DEX_API_KEY; CLI: --api-key or DEX_API_KEY); ${HOW_TO_GET_A_KEY}`,
      );
    }
    const match = values.length === 1 && typeof values[0] === "string" ? /^Bearer +(\S+) *$/i.exec(values[0]) : null;
    if (!match) {
      throw new DexError("UNAUTHENTICATED", `the authorization metadata must be exactly one "Bearer <key>" value; ${HOW_TO_GET_A_KEY}`);
    }
    return await authenticator.authenticate(match[1]!);
  } catch (err) {
    // Debug only: anyone can send these, and a flood of them must not flood the log.
    if (err instanceof DexError && err.code === "UNAUTHENTICATED") logger.debug("call refused: no valid API key", { method, peer: context.peer, reason: err.message });
    throw err;
  }
}

function authorize(principal: Principal, rule: MethodRule, method: string, context: CallContext, logger: Logger): void {
  if (rule.roles.includes(principal.role)) return;
  logger.info("call refused: role may not call method", { method, key: principal.name, role: principal.role, peer: context.peer });
  throw new DexError(
    "PERMISSION_DENIED",
    `the API key "${principal.name}" has role ${principal.role}; ${method} needs role ${rule.roles.join(" or ")}`,
  );
}

/** The queue limit of a call whose items are checked one by one (scope "activity-token-items"). */
export interface ItemQueueLimit {
  readonly principal: Principal;
  readonly queues: ReadonlySet<string>;
  readonly method: string;
}

const itemQueueLimits = new WeakMap<CallContext, ItemQueueLimit>();

/** The caller's queue limit for a per-item checked call; undefined when the key may use every queue. */
export function itemQueueLimit(context: CallContext): ItemQueueLimit | undefined {
  return itemQueueLimits.get(context);
}

/** undefined if the limit allows `queue`, else the PERMISSION_DENIED an item gets, as the unary call would. */
export function refuseItemQueue(limit: ItemQueueLimit, queue: string, context: CallContext, logger: Logger): DexError | undefined {
  if (limit.queues.has(queue)) return undefined;
  logger.info("call refused: queue not allowed for key", { method: limit.method, key: limit.principal.name, queue, peer: context.peer });
  return queueRefused(limit.principal, limit.queues, "the task token's queue", queue);
}

function queueRefused(principal: Principal, allowed: ReadonlySet<string>, what: string, queue: string): DexError {
  return new DexError(
    "PERMISSION_DENIED",
    `the API key "${principal.name}" may use only task queue(s) ${[...allowed].join(", ")}; ${what} is "${queue}"`,
  );
}

async function checkQueue(
  principal: Principal,
  allowed: ReadonlySet<string>,
  scope: QueueScope,
  request: unknown,
  method: string,
  context: CallContext,
  deps: AuthDeps,
): Promise<void> {
  const queue = await queueOf(scope, request, deps.engine);
  if (allowed.has(queue)) return;
  deps.logger.info("call refused: queue not allowed for key", { method, key: principal.name, queue, peer: context.peer });
  const what = scope === "poll" ? "task queue" : scope === "run" ? "the run's task queue" : scope === "query" ? "the query's task queue" : "the task token's queue";
  throw queueRefused(principal, allowed, what, queue);
}

/**
 * Eager activity dispatch (CompleteWorkflowTaskRequest.eager_activity_slots)
 * hands out activity tasks as a poll would: a key limited to some queues gets
 * none on a queue it may not poll. Not refused: the completion itself is
 * allowed (its token's queue was checked), so the offers for other queues are
 * dropped and those activities wait for a worker that may poll them.
 */
function withoutForeignEagerOffers(request: unknown, allowed: ReadonlySet<string>): void {
  const offers = (request as { eagerActivitySlots?: Array<{ taskQueue: string }> }).eagerActivitySlots;
  if (!Array.isArray(offers) || offers.length === 0) return;
  const kept = offers.filter((o) => allowed.has(o.taskQueue));
  if (kept.length !== offers.length) offers.splice(0, offers.length, ...kept);
}

/** The task queue a call is about. A malformed token or selector fails here as it would in the handler. */
async function queueOf(scope: QueueScope, request: unknown, engine: Engine): Promise<string> {
  switch (scope) {
    case "poll":
      return (request as { taskQueue: string }).taskQueue;
    case "workflow-token":
      return decodeWorkflowTaskToken((request as { taskToken: Uint8Array }).taskToken).queue;
    case "activity-token-items":
      throw new Error("activity-token-items is checked per item by the handler");
    case "activity-token":
      return decodeActivityTaskToken((request as { taskToken: Uint8Array }).taskToken).queue;
    case "query":
      return queueOfQuery(engine, (request as { queryId: string }).queryId);
    case "run": {
      const run = await requireRun(engine, runSelector("run", (request as { run: Parameters<typeof runSelector>[1] }).run));
      return run.taskQueue;
    }
  }
}

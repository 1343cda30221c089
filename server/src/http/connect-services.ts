/**
 * Serves the dex.v1 services over the Connect protocol (JSON or binary, HTTP/1.1) for browsers:
 * the web UI calls the same handlers, behind the same API-key checks, as gRPC clients do. Only
 * the transport differs: this file turns Connect's handler context into the CallContext the
 * handlers read, and a DexError into a ConnectError with the same status code.
 */
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { Code as ConnectCode, ConnectError, createContextKey, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { Code, DexError, type CallContext, type ServiceHandlers } from "@dex/proto";

/** One service as server.ts builds it: the descriptor and its checked, guarded handlers. */
export interface ServedService {
  service: GenService<GenServiceMethods>;
  handlers: ServiceHandlers<GenService<GenServiceMethods>>;
}

export interface ConnectHooks {
  onInternalError?: (err: unknown, method: string) => void;
  /** Aborts every call in flight when the server shuts down, as on the gRPC port. */
  shutdownSignal?: AbortSignal;
  onAnswered?: (call: { service: string; method: string; code: string; ms: number }) => void;
}

/** The peer's address, put in the context by the node adapter (ui-endpoint.ts). */
export const peerKey = createContextKey<string>("unknown");

/** Registers every service's unary methods on a Connect router. */
export function registerConnectServices(router: ConnectRouter, services: ServedService[], hooks: ConnectHooks): void {
  for (const { service, handlers } of services) {
    const implementation: Record<string, (request: never, context: HandlerContext) => Promise<unknown>> = {};
    for (const method of service.methods) {
      const handler = (handlers as Record<string, (request: unknown, context: CallContext) => Promise<unknown>>)[method.localName];
      if (!handler) throw new Error(`no handler for ${service.typeName}.${method.name}`);
      implementation[method.localName] = async (request, context) => {
        const started = performance.now();
        const answered = (code: string) => hooks.onAnswered?.({ service: service.typeName, method: method.name, code, ms: performance.now() - started });
        try {
          const response = await handler(request, callContext(context, hooks.shutdownSignal));
          answered("OK");
          return response;
        } catch (err) {
          const dexError = err instanceof DexError ? err : DexError.from(err, "INTERNAL");
          if (!(err instanceof DexError)) hooks.onInternalError?.(err, method.name);
          answered(dexError.code);
          // Connect's codes are gRPC's numbers, so the mapping is the identity.
          throw new ConnectError(dexError.message, Code[dexError.code] as ConnectCode);
        }
      };
    }
    router.service(service, implementation as never);
  }
}

function callContext(context: HandlerContext, shutdownSignal: AbortSignal | undefined): CallContext {
  const timeoutMs = context.timeoutMs();
  return {
    signal: shutdownSignal ? AbortSignal.any([context.signal, shutdownSignal]) : context.signal,
    deadline: timeoutMs === undefined ? undefined : new Date(Date.now() + timeoutMs),
    metadata: metadataOf(context.requestHeader),
    peer: context.values.get(peerKey),
  };
}

/** HTTP headers as the gRPC metadata the handlers (and auth.ts) read: lower-case names, text values. */
function metadataOf(headers: Headers): grpc.Metadata {
  const metadata = new grpc.Metadata();
  headers.forEach((value, name) => {
    if (name.endsWith("-bin")) return;
    try {
      metadata.add(name, value);
    } catch {
      // A header grpc-js deems unfit for metadata (odd characters) is one no handler reads.
    }
  });
  return metadata;
}

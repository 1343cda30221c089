/**
 * gRPC glue between protobuf-es generated service descriptors and @grpc/grpc-js.
 *
 * We serve and call with @grpc/grpc-js, using protobuf-es's binary codecs as the
 * (de)serializers (see docs/decisions/0001-grpc-transport.md for the
 * measurement). Both sides are derived from the generated descriptors, so the
 * .proto files stay the single source of truth.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";
import { encodeStatusDetails, STATUS_DETAILS_TRAILER } from "./error-details.js";
import { Code, DexError } from "./errors.js";

type Methods<S> = S extends GenService<infer M> ? M : never;

/** Per-call context handed to server handlers. */
export interface CallContext {
  /** Aborted when the client cancels the call, its deadline passes, or the server shuts down. */
  readonly signal: AbortSignal;
  /** The call's deadline, if the client set one. */
  readonly deadline: Date | undefined;
  /** Request metadata (headers). */
  readonly metadata: grpc.Metadata;
  /** The peer's address, for logs. */
  readonly peer: string;
}

/** An implementation of a service: one async function per unary RPC. */
export type ServiceHandlers<S extends GenService<GenServiceMethods>> = {
  [K in keyof Methods<S>]: (
    request: MessageShape<Methods<S>[K]["input"]>,
    context: CallContext,
  ) => Promise<MessageInitShape<Methods<S>[K]["output"]>>;
};

/** A typed client: one async function per unary RPC; errors are thrown as DexError. */
export type ServiceClient<S extends GenService<GenServiceMethods>> = {
  [K in keyof Methods<S>]: (
    request: MessageInitShape<Methods<S>[K]["input"]>,
    options?: CallOptions,
  ) => Promise<MessageShape<Methods<S>[K]["output"]>>;
};

export interface CallOptions {
  /** Absolute deadline or milliseconds from now. */
  deadline?: Date | number;
  /** Cancels the call. */
  signal?: AbortSignal;
  /** Extra request metadata. */
  metadata?: Record<string, string>;
}

function methodPath(service: { typeName: string }, methodName: string): string {
  return `/${service.typeName}/${methodName}`;
}

function serializer<D extends DescMessage>(schema: D) {
  return (message: MessageShape<D>): Buffer => {
    const bytes = toBinary(schema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<D extends DescMessage>(schema: D) {
  return (bytes: Buffer): MessageShape<D> => fromBinary(schema, bytes);
}

/**
 * A request the server could not decode. grpc-js answers INTERNAL when a
 * deserializer throws, which blames the server for a client's bytes; so the
 * server's deserializer returns this instead and the call answers
 * INVALID_ARGUMENT, naming the message type and what was wrong.
 */
class UndecodableRequest {
  constructor(readonly reason: string) {}
}

function requestDeserializer<D extends DescMessage>(schema: D) {
  return (bytes: Buffer): MessageShape<D> | UndecodableRequest => {
    try {
      return fromBinary(schema, bytes);
    } catch (err) {
      return new UndecodableRequest(err instanceof Error ? err.message : String(err));
    }
  };
}

/**
 * Builds a grpc-js service definition and implementation from a generated
 * service and handlers. Handler errors are normalised with DexError.from; any
 * error that is not a DexError is reported as INTERNAL and passed to `onInternalError`.
 */
export function grpcService<S extends GenService<GenServiceMethods>>(
  service: S,
  handlers: ServiceHandlers<S>,
  hooks: {
    onInternalError?: (err: unknown, method: string) => void;
    shutdownSignal?: AbortSignal;
    /** Told of every answered call: its status code name ("OK" for a response) and how long the handler took. */
    onAnswered?: (call: { service: string; method: string; code: string; ms: number }) => void;
    /**
     * Told of every call as it begins (tracing starts its span here, under the call's `traceparent`
     * metadata, linked to the trace contexts a batch's items carry); the function it returns, if any, is
     * told the call's status code name when it is answered. `request` is undefined when it could not be decoded.
     */
    onCall?: (call: { service: string; method: string; metadata: grpc.Metadata; request: unknown }) => ((code: string) => void) | undefined;
  } = {},
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary") throw new Error(`only unary methods are supported: ${method.name}`);
    const handler = (handlers as Record<string, ServiceHandlers<S>[keyof Methods<S>]>)[method.localName];
    if (!handler) throw new Error(`no handler for ${service.typeName}.${method.name}`);
    definition[method.localName] = {
      path: methodPath(service, method.name),
      requestStream: false,
      responseStream: false,
      requestSerialize: serializer(method.input) as (value: unknown) => Buffer,
      requestDeserialize: requestDeserializer(method.input),
      responseSerialize: serializer(method.output) as (value: unknown) => Buffer,
      responseDeserialize: deserializer(method.output),
    };
    const unary: grpc.handleUnaryCall<MessageShape<DescMessage>, MessageShape<DescMessage>> = (call, callback) => {
      const started = performance.now();
      const onCallAnswered = hooks.onCall?.({
        service: service.typeName,
        method: method.name,
        metadata: call.metadata,
        request: call.request instanceof UndecodableRequest ? undefined : call.request,
      });
      const abort = new AbortController();
      // grpc-js may report a call cancelled after its answer went out; a DexError (a stack trace)
      // per answered call cost about 1% of the server's CPU in the throughput run, for nothing.
      let answered = false;
      const onCancel = () => {
        if (!answered) abort.abort(new DexError("CANCELLED", "call cancelled"));
      };
      call.once("cancelled", onCancel);
      hooks.shutdownSignal?.addEventListener("abort", onCancel, { once: true });
      const deadline = call.getDeadline();
      const context: CallContext = {
        signal: abort.signal,
        deadline: deadline instanceof Date ? deadline : Number.isFinite(deadline) ? new Date(deadline) : undefined,
        metadata: call.metadata,
        peer: call.getPeer(),
      };
      Promise.resolve()
        .then(() => {
          if (call.request instanceof UndecodableRequest) {
            throw new DexError("INVALID_ARGUMENT", `the request is not a valid ${method.input.typeName} message: ${call.request.reason}`);
          }
          return handler(call.request as never, context);
        })
        .then(
          (response) => {
            answered = true;
            callback(null, create(method.output, response as never));
            onCallAnswered?.("OK");
            hooks.onAnswered?.({ service: service.typeName, method: method.name, code: "OK", ms: performance.now() - started });
          },
          (err: unknown) => {
            answered = true;
            const dexError = err instanceof DexError ? err : DexError.from(err, "INTERNAL");
            if (!(err instanceof DexError)) hooks.onInternalError?.(err, method.name);
            callback(statusOf(dexError));
            onCallAnswered?.(dexError.code);
            hooks.onAnswered?.({ service: service.typeName, method: method.name, code: dexError.code, ms: performance.now() - started });
          },
        )
        .finally(() => {
          call.removeListener("cancelled", onCancel);
          hooks.shutdownSignal?.removeEventListener("abort", onCancel);
        });
    };
    implementation[method.localName] = unary;
  }
  return { definition: definition as grpc.ServiceDefinition, implementation };
}

/** A DexError as the status grpc-js sends: code, message, and its typed details in the standard trailer. */
function statusOf(error: DexError): grpc.ServiceError {
  const code = Code[error.code];
  const status = { code, details: error.message } as grpc.ServiceError;
  const bytes = error.details && encodeStatusDetails(code, error.message, error.details);
  if (bytes) {
    status.metadata = new grpc.Metadata();
    status.metadata.set(STATUS_DETAILS_TRAILER, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  return status;
}

/**
 * Creates a typed client for a generated service over a grpc-js channel.
 * Every RPC error is rethrown as a DexError carrying the status code name and
 * the typed details of its grpc-status-details-bin trailer (DexError.from).
 */
export function createServiceClient<S extends GenService<GenServiceMethods>>(
  service: S,
  client: grpc.Client,
): ServiceClient<S> {
  const result: Record<string, unknown> = {};
  for (const method of service.methods) {
    const path = methodPath(service, method.name);
    const serialize = serializer(method.input);
    const deserialize = deserializer(method.output);
    result[method.localName] = (request: MessageInitShape<DescMessage>, options: CallOptions = {}) =>
      new Promise((resolve, reject) => {
        if (options.signal?.aborted) {
          reject(new DexError("CANCELLED", "call cancelled before it started"));
          return;
        }
        const metadata = new grpc.Metadata();
        for (const [key, value] of Object.entries(options.metadata ?? {})) metadata.set(key, value);
        const callOptions: grpc.CallOptions = {};
        if (options.deadline !== undefined) {
          callOptions.deadline =
            typeof options.deadline === "number" ? new Date(Date.now() + options.deadline) : options.deadline;
        }
        const call = client.makeUnaryRequest(
          path,
          serialize,
          deserialize,
          create(method.input, request),
          metadata,
          callOptions,
          (err, response) => {
            options.signal?.removeEventListener("abort", onAbort);
            if (err) reject(DexError.from(err));
            else resolve(response);
          },
        );
        const onAbort = () => call.cancel();
        options.signal?.addEventListener("abort", onAbort, { once: true });
      });
  }
  return result as ServiceClient<S>;
}

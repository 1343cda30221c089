/**
 * Typed error details (docs/errors.md, decision 0025): the refusals a program
 * must tell apart carry a dex.v1.ErrorDetails in the standard
 * grpc-status-details-bin trailer, which the typed client turns into
 * DexError fields. Read here both ways: as DexError fields, and as the raw
 * trailer another language's client sees.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Code,
  createServiceClient,
  decodeStatusDetails,
  DexError,
  grpcService,
  encodeStatusDetails,
  ErrorDetailsSchema,
  ErrorReason,
  FailureSchema,
  InstanceIdReusePolicy,
  MAX_STATUS_DETAILS_BYTES,
  RpcStatusSchema,
  RunStatus,
  StartWorkflowRequestSchema,
  StartWorkflowResponseSchema,
  ClientService,
} from "@dex/proto";
import { toBinary } from "@bufbuild/protobuf";
import { updateRejected } from "../src/engine/run-refusals.js";
import { byInstance, byRunId, completeRun, rejectsWith, startWith, uniqueId, startHarness, type Harness } from "./helpers.js";

/** A StartWorkflow made with a bare grpc-js client, as a client without the dex glue makes it: the error as it arrives. */
function rawStart(h: Harness, instanceId: string): Promise<grpc.ServiceError> {
  const method = ClientService.method.startWorkflow;
  return new Promise((resolve, reject) => {
    h.channel.makeUnaryRequest(
      `/${ClientService.typeName}/${method.name}`,
      (req: unknown) => Buffer.from(toBinary(StartWorkflowRequestSchema, create(StartWorkflowRequestSchema, req as never))),
      (bytes: Buffer) => fromBinary(StartWorkflowResponseSchema, bytes),
      { workflowName: "wf", instanceId },
      (err, response) => (err ? resolve(err) : reject(new Error(`expected a refusal, got ${JSON.stringify(response)}`))),
    );
  });
}

describe("typed error details", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it("ALREADY_EXISTS from StartWorkflow carries the open run's id, in DexError fields and in the raw trailer", async () => {
    const instanceId = uniqueId("order");
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId });
    const err = await rejectsWith(h.client.startWorkflow({ workflowName: "wf", instanceId }), "ALREADY_EXISTS", /already has an open run/);
    expect(err.reason).toBe("RUN_ALREADY_OPEN");
    expect(err.runId).toBe(runId);
    expect(err.instanceId).toBe(instanceId);
    expect(err.runStatus).toBeUndefined();

    const raw = await rawStart(h, instanceId);
    expect(raw.code).toBe(Code.ALREADY_EXISTS);
    const [trailer] = raw.metadata.get("grpc-status-details-bin");
    expect(trailer).toBeInstanceOf(Buffer);
    // Decoded as any google.rpc.Status reader would: code and message repeat the call's, then one packed detail.
    const status = fromBinary(RpcStatusSchema, trailer as Buffer);
    expect(status.code).toBe(Code.ALREADY_EXISTS);
    expect(status.message).toBe(raw.details);
    expect(status.details.map((d) => d.typeUrl)).toEqual(["type.googleapis.com/dex.v1.ErrorDetails"]);
    const details = anyUnpack(status.details[0]!, ErrorDetailsSchema);
    expect(details).toMatchObject({ reason: ErrorReason.RUN_ALREADY_OPEN, runId, instanceId });
  });

  it("ALREADY_EXISTS from a reuse policy names the latest run and how it ended", async () => {
    const instanceId = uniqueId("once");
    const { runId } = await h.client.startWorkflow({ workflowName: "wf", instanceId });
    await h.client.terminateRun({ run: byRunId(runId), reason: "done with it" });
    const err = await rejectsWith(
      h.client.startWorkflow({ workflowName: "wf", instanceId, reusePolicy: InstanceIdReusePolicy.REJECT }),
      "ALREADY_EXISTS",
      /reuse_policy REJECT/,
    );
    expect(err.reason).toBe("RUN_REUSE_REJECTED");
    expect(err.runId).toBe(runId);
    expect(err.runStatus).toBe("TERMINATED");
  });

  it("FAILED_PRECONDITION on an ended run carries its status: SendEvent, CancelRun, TerminateRun", async () => {
    const instanceId = uniqueId("done");
    const runId = await startWith(h, [completeRun({ ok: true })], { instanceId });
    const refusals = [
      () => h.client.sendEvent({ run: byRunId(runId), eventId: "late" }),
      () => h.client.cancelRun({ run: byRunId(runId) }),
      () => h.client.terminateRun({ run: byInstance(instanceId) }),
    ];
    for (const refusal of refusals) {
      const err = await rejectsWith(refusal(), "FAILED_PRECONDITION", /has already ended \(COMPLETED\)/);
      expect(err.reason).toBe("RUN_ENDED");
      expect(err.runId).toBe(runId);
      expect(err.instanceId).toBe(instanceId);
      expect(err.runStatus).toBe("COMPLETED");
      expect(err.details?.runStatus).toBe(RunStatus.COMPLETED);
    }
  });

  it("a refusal without details sends no trailer and leaves the fields unset", async () => {
    const err = await rejectsWith(h.client.startWorkflow({ workflowName: "", instanceId: "x" }), "INVALID_ARGUMENT");
    expect(err.details).toBeUndefined();
    expect(err.reason).toBeUndefined();
    expect(err.runId).toBeUndefined();
  });
});

describe("the status trailer's size", () => {
  const failure = (messageLength: number, stackLength: number) =>
    create(FailureSchema, { message: "m".repeat(messageLength), type: "OutOfStock", stack: "s".repeat(stackLength), cause: { message: "deeper" } });

  it("keeps a failure whole when it fits, and cuts it to message and type when it does not", () => {
    const small = create(ErrorDetailsSchema, { reason: ErrorReason.UPDATE_REJECTED, runId: "r", updateId: "u", failure: failure(10, 100) });
    const whole = decodeStatusDetails(Code.FAILED_PRECONDITION, encodeStatusDetails(Code.FAILED_PRECONDITION, "refused", small)!);
    expect(whole?.failure).toMatchObject({ message: "m".repeat(10), stack: "s".repeat(100), cause: { message: "deeper" } });

    const big = create(ErrorDetailsSchema, { reason: ErrorReason.UPDATE_REJECTED, failure: failure(100, 10_000) });
    const bytes = encodeStatusDetails(Code.FAILED_PRECONDITION, "refused", big)!;
    expect(bytes.byteLength).toBeLessThanOrEqual(MAX_STATUS_DETAILS_BYTES);
    const cut = decodeStatusDetails(Code.FAILED_PRECONDITION, bytes);
    expect(cut?.failure).toMatchObject({ message: "m".repeat(100), type: "OutOfStock", stack: "" });
    expect(cut?.failure?.cause).toBeUndefined();
  });

  it("sends no details rather than an oversized trailer, and believes no status whose code differs from the call's", () => {
    const huge = create(ErrorDetailsSchema, { reason: ErrorReason.UPDATE_REJECTED, failure: failure(MAX_STATUS_DETAILS_BYTES, 0) });
    expect(encodeStatusDetails(Code.FAILED_PRECONDITION, "refused", huge)).toBeUndefined();
    const bytes = encodeStatusDetails(Code.ALREADY_EXISTS, "exists", create(ErrorDetailsSchema, { reason: ErrorReason.RUN_ALREADY_OPEN }))!;
    expect(decodeStatusDetails(Code.ALREADY_EXISTS, bytes)?.reason).toBe(ErrorReason.RUN_ALREADY_OPEN);
    expect(decodeStatusDetails(Code.INTERNAL, bytes)).toBeUndefined();
    expect(decodeStatusDetails(Code.ALREADY_EXISTS, new Uint8Array([0xff, 0xff]))).toBeUndefined();
  });
});

describe("a failure in the details, over gRPC", () => {
  let server: grpc.Server;
  let channel: grpc.Client;
  let stack = "";
  beforeAll(async () => {
    // A server whose every method refuses as UpdateRun's validator would: the details as the updates
    // branch attaches them, through grpcService and createServiceClient.
    const refuse = async () => {
      const failure = create(FailureSchema, { message: "cart is closed", type: "CartClosed", stack, cause: { message: "checked out" } });
      throw new DexError("FAILED_PRECONDITION", "update add-item was rejected by its validator: cart is closed", {
        details: updateRejected({ id: "0190a1b2-0000-7000-8000-000000000001", instanceId: "cart-9" }, "upd-1", failure),
      });
    };
    const { definition, implementation } = grpcService(ClientService, new Proxy({}, { get: () => refuse }) as never);
    server = new grpc.Server();
    server.addService(definition, implementation);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
    );
    channel = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    channel?.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  });

  it("arrives whole when it fits, and cut to message and type when its stack would pass the trailer's limit", async () => {
    const client = createServiceClient(ClientService, channel);
    stack = "at validator (cart.ts:1:1)";
    const small = await rejectsWith(client.describeRun({}), "FAILED_PRECONDITION", /rejected by its validator/);
    expect(small.reason).toBe("UPDATE_REJECTED");
    expect(small.updateId).toBe("upd-1");
    expect(small.runId).toBe("0190a1b2-0000-7000-8000-000000000001");
    expect(small.failure).toMatchObject({ message: "cart is closed", type: "CartClosed", stack, cause: { message: "checked out" } });

    stack = "x".repeat(20_000);
    const big = await rejectsWith(client.describeRun({}), "FAILED_PRECONDITION", /rejected by its validator/);
    expect(big.reason).toBe("UPDATE_REJECTED");
    expect(big.failure).toMatchObject({ message: "cart is closed", type: "CartClosed", stack: "" });
    expect(big.failure?.cause).toBeUndefined();
  });
});

/**
 * The permission table (api/permissions.ts) covers every RPC of the three
 * dex.v1 services (ScheduleService included), read from the .proto sources as well as from the generated
 * descriptors, so a new RPC cannot be served without a rule; and the server
 * refuses to wrap a method that has none.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ClientService, protoRoot, ScheduleService, TaskQueueService, WorkerService } from "@dex/proto";
import { withApiKeys } from "../src/api/auth.js";
import { METHOD_RULES } from "../src/api/permissions.js";

/** "/dex.v1.Service/Method" for every `rpc` line of a .proto file, by reading its text. */
function rpcsInProto(file: string): string[] {
  const text = readFileSync(`${protoRoot}/dex/v1/${file}`, "utf8");
  const names: string[] = [];
  let service: string | undefined;
  for (const line of text.split("\n")) {
    const open = /^\s*service\s+(\w+)\s*\{/.exec(line);
    if (open) service = open[1];
    const rpc = /^\s*rpc\s+(\w+)\s*\(/.exec(line);
    if (rpc) names.push(`/dex.v1.${service}/${rpc[1]}`);
  }
  return names;
}

describe("the permission table", () => {
  const fromProto = ["client_service.proto", "worker_service.proto", "task_queue_service.proto", "schedule_service.proto"].flatMap(rpcsInProto);
  const fromDescriptors = [ClientService, WorkerService, TaskQueueService, ScheduleService].flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`));

  it("has a rule for exactly the RPCs the .proto files and the generated descriptors declare", () => {
    expect(fromProto.length).toBeGreaterThanOrEqual(22);
    expect(new Set(fromProto)).toEqual(new Set(fromDescriptors));
    expect(Object.keys(METHOD_RULES).sort()).toEqual([...fromProto].sort());
  });

  it("lets admin call everything and limits the other roles as documented", () => {
    for (const [method, rule] of Object.entries(METHOD_RULES)) {
      expect(rule.roles, method).toContain("admin");
      expect(rule.roles.length, method).toBeGreaterThan(0);
    }
    const allowed = (role: string) => Object.keys(METHOD_RULES).filter((m) => METHOD_RULES[m]!.roles.includes(role as never)).sort();
    expect(allowed("worker")).toEqual([
      ...WorkerService.methods.map((m) => `/dex.v1.WorkerService/${m.name}`),
      "/dex.v1.ClientService/GetRunHistory",
    ].sort());
    expect(allowed("client")).toEqual([
      ...ClientService.methods.filter((m) => !["TerminateRun", "DeleteRun", "ResetRun"].includes(m.name)).map((m) => `/dex.v1.ClientService/${m.name}`),
      "/dex.v1.TaskQueueService/ListTaskQueues",
      ...ScheduleService.methods.map((m) => `/dex.v1.ScheduleService/${m.name}`),
    ].sort());
  });

  it("checks the queue of every worker call that names one", () => {
    for (const method of WorkerService.methods) {
      expect(METHOD_RULES[`/dex.v1.WorkerService/${method.name}`]!.queue, method.name).toBeDefined();
    }
    expect(METHOD_RULES["/dex.v1.ClientService/GetRunHistory"]!.queue).toBe("run");
  });

  it("refuses to serve a method that has no rule", () => {
    const unknown = { typeName: "dex.v1.ClientService", methods: [{ name: "Brand", localName: "brand" }] };
    const handlers = { brand: async () => ({}) };
    expect(() => withApiKeys(unknown as never, handlers as never, {} as never)).toThrow(
      /\/dex\.v1\.ClientService\/Brand has no rule in server\/src\/api\/permissions\.ts/,
    );
  });
});

import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Script } from "node:vm";
import { create } from "@bufbuild/protobuf";
import { QueryTaskSchema, WorkflowTaskSchema } from "@dex/proto";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../src/common/logger.js";
import { createActivationGate } from "../src/worker/deadlock-watchdog.js";
import { deadlockWatchdogSource } from "../src/worker/deadlock-watchdog-thread.js";

const connection = { target: { target: "127.0.0.1:1", display: "127.0.0.1:1" }, tls: undefined, apiKey: undefined } as never;
const task = (runId: string) => create(WorkflowTaskSchema, { runId, workflowName: "w", taskToken: new Uint8Array([1, 2, 3]), attempt: 1 });

describe("the activation gate", () => {
  it("the watchdog thread's source is valid JavaScript", () => {
    expect(() => new Script(deadlockWatchdogSource)).not.toThrow();
  });

  it("runs activations one at a time, in order, and goes on after one that failed", async () => {
    const gate = createActivationGate({ timeoutMs: 60_000, connection, logger: silentLogger });
    const events: string[] = [];
    let running = 0;
    const activation = (name: string, fail = false) => async () => {
      running++;
      expect(running).toBe(1);
      events.push(`start ${name}`);
      // Yields several times, as a replay of many blocks does: another activation must not start meanwhile.
      for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
      events.push(`end ${name}`);
      running--;
      if (fail) throw new TypeError(`${name} broke`);
      return name;
    };
    const results = await Promise.allSettled([
      gate.run(task("a"), activation("a")),
      gate.run(task("b"), activation("b", true)),
      gate.run(task("c"), activation("c")),
    ]);
    await gate.close();
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(events).toEqual(["start a", "end a", "start b", "end b", "start c", "end c"]);
  });

  it("runs a query's replay or handler in the same line as activations, never beside one", async () => {
    const gate = createActivationGate({ timeoutMs: 60_000, connection, logger: silentLogger });
    const events: string[] = [];
    const step = (name: string) => async () => {
      events.push(`start ${name}`);
      for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
      events.push(`end ${name}`);
    };
    const query = create(QueryTaskSchema, { runId: "a", workflowName: "w", queryName: "q" });
    await Promise.all([gate.run(task("a"), step("a")), gate.runQuery(query, step("query")), gate.run(task("b"), step("b"))]);
    await gate.close();
    expect(events).toEqual(["start a", "end a", "start query", "end query", "start b", "end b"]);
  });

  it("stops the process when a query's workflow code never yields, naming the run and the query on stderr", async () => {
    // In a child process (fixtures/query-busy-loop.ts): the watchdog kills the process it watches.
    const fixture = fileURLToPath(new URL("./fixtures/query-busy-loop.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", fixture], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    // A deadline, not a wait: a busy loop nothing watches would never end.
    const deadline = setTimeout(() => child.kill("SIGTERM"), 20_000);
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, sig) => resolve(sig)));
    clearTimeout(deadline);
    expect(stderr).toContain('workflow code of run run-q1 (workflow "spinner") answering query "spin" has not yielded');
    expect(signal).toBe("SIGKILL");
  }, 30_000);
});

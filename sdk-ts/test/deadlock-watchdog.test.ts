import { Script } from "node:vm";
import { create } from "@bufbuild/protobuf";
import { WorkflowTaskSchema } from "@dex/proto";
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
});

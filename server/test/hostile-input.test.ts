/**
 * Hostile input to every RPC, over real gRPC against a real server and
 * database. Requests are generated from a seeded PRNG (DEX_FUZZ_SEED repeats
 * a run; the failure report names the seed, the case and every value used).
 * Each answer must be a success or a gRPC error other than INTERNAL/UNKNOWN
 * whose message carries no stack trace or SQL; a request with a value that is
 * certainly invalid must be refused; and a refused request must leave every
 * dex table exactly as it was.
 *
 * Each generated-request test owns a server and database and stops its loop
 * when vitest aborts it (a timeout): a loop left running wrote into the next
 * test's tables and made it report changes it had not made (issue 11).
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "@dex/testing";
import { ClientService, DexError, TaskQueueService, TaskQueueType, WorkerService } from "@dex/proto";
import { commands } from "./hostile-input-commands.js";
import { specs, type Fixtures, type Spec } from "./hostile-input-specs.js";
import { Rng } from "./hostile-input-values.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../src/index.js";
import { byRunId, pollActivityOf, pollWorkflowTaskOf, scheduleActivity, startHarness, uniqueId, type Harness } from "./helpers.js";

const SEED = Number(process.env.DEX_FUZZ_SEED ?? 20_240_917);
const CASES_PER_RPC = Number(process.env.DEX_FUZZ_CASES ?? 30);
const PAYLOAD_LIMIT = 64 * 1024;
const FIXTURE_QUEUE = "fx";
/** A whole pass over every RPC: minutes on a loaded machine, the loop stopped if it runs out. */
const FUZZ_TIMEOUT_MS = 600_000;

/**
 * Every dex table, one digest each; task_queues by the columns a request can
 * change (the poll tracker writes last_polled_at in the background).
 */
async function snapshot(h: Harness): Promise<Record<string, string>> {
  const [row] = await h.sql<Record<string, string>[]>`
    select
      (select count(*) || ':' || md5(coalesce(string_agg(t::text, '|' order by id), '')) from dex.runs t) as runs,
      (select count(*) || ':' || md5(coalesce(string_agg(t::text, '|' order by run_id, sequence), '')) from dex.history_events t) as history,
      (select count(*) || ':' || md5(coalesce(string_agg(t::text, '|' order by id), '')) from dex.inbox t) as inbox,
      (select count(*) || ':' || md5(coalesce(string_agg(t::text, '|' order by run_id, seq), '')) from dex.timers t) as timers,
      (select count(*) || ':' || md5(coalesce(string_agg(t::text, '|' order by queue_name, run_id), '')) from dex.workflow_tasks t) as workflow_tasks,
      (select count(*) || ':' || md5(coalesce(string_agg(t::text, '|' order by queue_name, run_id, seq), '')) from dex.activity_tasks t) as activity_tasks,
      (select count(*) || ':' || md5(coalesce(string_agg(row(type, name, capacity, status, partition_name)::text, '|' order by type, name), ''))
         from dex.task_queues) as task_queues`;
  return row!;
}

/**
 * Waits until the server has nothing left to do by itself: a timer started by a successful case
 * with a zero duration (generated durations are 0 or at least an hour) is due at once, and the
 * timer loop deletes it as it fires, in the transaction that writes what it caused.
 */
async function quiesce(h: Harness): Promise<void> {
  await waitFor(
    async () => (await h.sql<{ n: number }[]>`select count(*)::int as n from dex.timers where fire_at <= now()`)[0]!.n === 0,
    { message: "the timers a case made due to fire" },
  );
}

type Outcome = { ok: true } | { ok: false; code: string; message: string };

async function outcome(promise: Promise<unknown>): Promise<Outcome> {
  try {
    await promise;
    return { ok: true };
  } catch (err) {
    const e = DexError.from(err);
    return { ok: false, code: e.code, message: e.message };
  }
}

/** A message is for the caller: no stack frames, source paths or SQL, and no unbounded echo of the input. */
const LEAKS = /\n\s+at\s|\.(ts|js):\d+|node_modules|syntax error|violates|relation "|duplicate key|out of range for type|invalid input syntax/i;

const all = specs(commands);

/**
 * One test's server and database, fixtures and findings. Every case checks `signal` first: once
 * vitest aborts the test (a timeout), the loop stops instead of writing on.
 */
class FuzzSession {
  readonly problems: string[] = [];
  rejected = 0;
  succeeded = 0;
  /** Answers per RPC and status code; DEX_FUZZ_VERBOSE=1 prints them. */
  readonly tally = new Map<string, Map<string, number>>();
  private readonly fx: Fixtures & { runId: string; nextSeq: number; workflowAt: number; haveWorkflow: boolean; haveActivity: boolean } = {
    victimRunId: "",
    victimInstanceId: "",
    workflowToken: new Uint8Array(),
    activityToken: new Uint8Array(),
    payloadLimit: PAYLOAD_LIMIT,
    runId: "",
    nextSeq: 1,
    workflowAt: 0,
    haveWorkflow: false,
    haveActivity: false,
  };

  private constructor(
    readonly h: Harness,
    private readonly signal: AbortSignal,
  ) {}

  static async open(signal: AbortSignal): Promise<FuzzSession> {
    const h = await startHarness({
      limits: { maxPayloadBytes: PAYLOAD_LIMIT },
      maxPollWaitMs: 100,
      workflowTaskRetry: { initialMs: 1, maxMs: 1 },
    });
    const session = new FuzzSession(h, signal);
    for (const type of [TaskQueueType.WORKFLOW, TaskQueueType.ACTIVITY]) await h.queues.createTaskQueue({ name: FIXTURE_QUEUE, type });
    session.fx.victimInstanceId = uniqueId("victim");
    session.fx.victimRunId = (await h.client.startWorkflow({ workflowName: "wf", instanceId: session.fx.victimInstanceId })).runId;
    return session;
  }

  /** Every run whole (history from run_started, contiguous up to history_length), nothing orphaned; then closes. */
  async closeIntact(): Promise<void> {
    try {
      const broken = await this.h.sql<{ id: string }[]>`
        select r.id from dex.runs r
        left join lateral (select count(*)::int as n, min(sequence) as lo, max(sequence) as hi,
                                  bool_or(sequence = 1 and kind = 'run_started') as started
                           from dex.history_events e where e.run_id = r.id) e on true
        where e.n <> r.history_length or e.lo <> 1 or e.hi <> r.history_length or not e.started`;
      expect(broken, "runs left half-written").toEqual([]);
      const orphans = await this.h.sql<{ n: number }[]>`
        select (select count(*) from dex.history_events e where not exists (select 1 from dex.runs r where r.id = e.run_id))
             + (select count(*) from dex.inbox i where not exists (select 1 from dex.runs r where r.id = i.run_id))
             + (select count(*) from dex.workflow_tasks t where not exists (select 1 from dex.runs r where r.id = t.run_id))
             + (select count(*) from dex.activity_tasks t where not exists (select 1 from dex.runs r where r.id = t.run_id)) as n`;
      expect(Number(orphans[0]!.n), "rows whose run does not exist").toBe(0);
    } finally {
      if (process.env.DEX_FUZZ_VERBOSE) {
        for (const [method, codes] of this.tally) console.log(`${method}: ${[...codes].map(([c, n]) => `${c} ${n}`).join(", ")}`);
      }
      await this.h.close();
    }
  }

  /** The fixture run on its own queue (never named by a case), with a leased workflow task. */
  private async newFixtureRun(): Promise<void> {
    this.fx.runId = (await this.h.client.startWorkflow({ workflowName: "fixture", instanceId: uniqueId("fixture"), taskQueue: FIXTURE_QUEUE })).runId;
    this.fx.nextSeq = 1;
    await this.takeWorkflowTask();
  }

  private async takeWorkflowTask(): Promise<void> {
    const task = await pollWorkflowTaskOf(this.h, this.fx.runId, "fixture-worker", FIXTURE_QUEUE);
    this.fx.workflowToken = task.taskToken;
    this.fx.workflowAt = Date.now();
    this.fx.haveWorkflow = true;
  }

  /** A live workflow task token, younger than half its 10 s lease. */
  private async ensureWorkflowTask(): Promise<void> {
    const { h, fx } = this;
    if (fx.haveWorkflow && Date.now() - fx.workflowAt < 5_000) return;
    if (fx.haveWorkflow) {
      // Hand it back (retried after 1 ms) and take it again with a fresh lease.
      const failed = await outcome(h.worker.failWorkflowTask({ taskToken: fx.workflowToken, failure: { message: "refresh" } }));
      fx.haveWorkflow = false;
      if (failed.ok) return this.takeWorkflowTask();
    }
    const { status } = await h.client.getRunResult({ run: byRunId(fx.runId || fx.victimRunId) });
    if (!fx.runId || status > 2) return this.newFixtureRun();
    // The run has no workflow task after a completion: an event gives it one.
    await h.client.sendEvent({ run: byRunId(fx.runId), eventId: uniqueId("wake") });
    await this.takeWorkflowTask();
  }

  private async ensureActivityTask(): Promise<void> {
    const { h, fx } = this;
    if (fx.haveActivity) return;
    await this.ensureWorkflowTask();
    const seq = 100_000 + fx.nextSeq++;
    await h.worker.completeWorkflowTask({ taskToken: fx.workflowToken, commands: [scheduleActivity(seq, "act", { taskQueue: FIXTURE_QUEUE })] });
    fx.haveWorkflow = false;
    fx.activityToken = (await pollActivityOf(h, fx.runId, seq, FIXTURE_QUEUE)).taskToken;
    fx.haveActivity = true;
  }

  /** The fixtures a case of `spec` needs, then the case's request. */
  async request(spec: Spec): Promise<Record<string, unknown>> {
    this.signal.throwIfAborted();
    if (spec.needs === "workflow") await this.ensureWorkflowTask();
    if (spec.needs === "activity") await this.ensureActivityTask();
    return spec.base(this.fx);
  }

  field(spec: Spec, name: string, rng: Rng) {
    return spec.fields[name]!(rng, this.fx);
  }

  call(spec: Spec, request: unknown): Promise<unknown> {
    const service = this.h[spec.service] as unknown as Record<string, (req: unknown, options: unknown) => Promise<unknown>>;
    return service[spec.method]!(request, { deadline: 30_000 });
  }

  /** Raw bytes to an RPC, bypassing the codec: what a broken or hostile client can send. */
  callRaw(spec: Spec, bytes: Uint8Array): Promise<unknown> {
    const service = { client: ClientService, worker: WorkerService, queues: TaskQueueService }[spec.service];
    const method = service.methods.find((m) => m.localName === spec.method)!;
    return new Promise((resolve, reject) => {
      this.h.channel.makeUnaryRequest(
        `/${service.typeName}/${method.name}`,
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(bytes),
        new grpc.Metadata(),
        { deadline: new Date(Date.now() + 30_000) },
        (err, res) => (err ? reject(err) : resolve(res)),
      );
    });
  }

  /** Runs one case and records what is wrong with the answer, if anything. */
  async check(spec: Spec, label: string, mustReject: boolean, send: () => Promise<unknown>, expectCode?: string): Promise<void> {
    this.signal.throwIfAborted();
    const { h, fx, problems } = this;
    const before = await snapshot(h);
    const result = await outcome(send());
    const codes = this.tally.get(spec.method) ?? new Map<string, number>();
    this.tally.set(spec.method, codes);
    const code = result.ok ? "OK" : result.code;
    codes.set(code, (codes.get(code) ?? 0) + 1);
    if (process.env.DEX_FUZZ_VERBOSE === "2") console.log(`${spec.method} ${label} -> ${code} ${result.ok ? "" : result.message.slice(0, 200)}`);
    const where = `seed ${SEED}, ${spec.method}: ${label}`;
    if (result.ok) {
      this.succeeded++;
      if (mustReject) problems.push(`${where}: accepted, but a value in it is invalid`);
      if (spec.method === "completeWorkflowTask") fx.haveWorkflow = false;
      if (spec.method === "failWorkflowTask") fx.haveWorkflow = false;
      if (spec.method === "completeActivityTask" || spec.method === "failActivityTask") fx.haveActivity = false;
      if (spec.method === "completeWorkflowTask") {
        await quiesce(h);
        // A terminal command ended the fixture run, and its activity task with it.
        if ((await h.client.getRunResult({ run: byRunId(fx.runId) })).status > 2) fx.haveActivity = false;
      }
      return;
    }
    this.rejected++;
    if (expectCode && result.code !== expectCode) problems.push(`${where}: ${result.code} (expected ${expectCode}): ${result.message}`);
    if (result.code === "INTERNAL" || result.code === "UNKNOWN") problems.push(`${where}: ${result.code}: ${result.message}`);
    if (LEAKS.test(result.message)) problems.push(`${where}: the message leaks internals: ${result.message.slice(0, 300)}`);
    if (result.message.length > 1_000) problems.push(`${where}: a ${result.message.length}-character message`);
    const after = await snapshot(h);
    for (const table of Object.keys(before)) {
      if (before[table] !== after[table]) problems.push(`${where}: refused with ${result.code}, but dex.${table} changed`);
    }
  }
}

describe("hostile input to every RPC", () => {
  // The servers run in this process: a warning one emits (a timer too long for setTimeout spins) is a finding.
  const warnings: string[] = [];
  const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
  beforeAll(() => {
    process.on("warning", onWarning);
  });
  afterAll(() => {
    process.off("warning", onWarning);
  });

  it("covers every RPC of the three services", () => {
    const covered = new Set(all.map((s) => `${s.service}.${s.method}`));
    for (const [name, service] of [["client", ClientService], ["worker", WorkerService], ["queues", TaskQueueService]] as const) {
      for (const method of service.methods) expect(covered, `${service.typeName}.${method.name}`).toContain(`${name}.${method.localName}`);
    }
  });

  it("answers every generated request with a clear status and writes nothing when it refuses", { timeout: FUZZ_TIMEOUT_MS }, async ({ signal }) => {
    const session = await FuzzSession.open(signal);
    try {
      const rng = new Rng(SEED);
      for (const spec of all) {
        // Every field missing: only the listings have nothing required.
        await session.check(spec, "empty request", !spec.method.startsWith("list"), () => session.call(spec, {}));
        for (let i = 0; i < CASES_PER_RPC * (spec.weight ?? 1); i++) {
          const request = await session.request(spec);
          const names = Object.keys(spec.fields);
          const labels: string[] = [];
          let bad = false;
          // One to three distinct fields: a later value for the same field would hide an earlier one.
          for (let k = Math.min(names.length, 1 + rng.int(3)); k > 0; k--) {
            const name = names.splice(rng.int(names.length), 1)[0]!;
            const value = session.field(spec, name, rng);
            request[name] = value.value;
            labels.push(`${name}: ${value.label}${value.bad ? "!" : ""}`);
            bad ||= value.bad;
          }
          await session.check(spec, `case ${i} {${labels.join("; ")}}`, bad, () => session.call(spec, request));
        }
      }
      expect(session.problems, session.problems.join("\n")).toEqual([]);
      expect([...new Set(warnings)]).toEqual([]);
      expect(session.rejected).toBeGreaterThan(session.succeeded);
    } finally {
      await session.closeIntact();
    }
  });

  it("refuses undecodable bytes with INVALID_ARGUMENT and an oversized message with RESOURCE_EXHAUSTED", { timeout: FUZZ_TIMEOUT_MS }, async ({ signal }) => {
    const session = await FuzzSession.open(signal);
    try {
      const rng = new Rng(SEED + 1);
      const deep = (depth: number): number[] => {
        // FailActivityTaskRequest.failure (2) -> Failure.cause (6) -> ... nested past the decoder's limit.
        let inner: number[] = [0x0a, 0x01, 0x78];
        for (let i = 0; i < depth; i++) inner = [0x32, ...varint(inner.length), ...inner];
        return [0x12, ...varint(inner.length), ...inner];
      };
      // Undecodable as any of the request types: INVALID_ARGUMENT, whatever the method.
      const garbage: Array<[string, Uint8Array]> = [
        ["a truncated length", new Uint8Array([0x0a, 0x7f, 0x01])],
        ["a varint that never ends", new Uint8Array(11).fill(0xff)],
        ["wire type 7", new Uint8Array([0x0f, 0x00])],
        ["a varint where a string belongs", new Uint8Array([0x08, 0x96, 0x01])],
        ["an unterminated group", new Uint8Array([0x0b, 0x08, 0x01])],
      ];
      // Undecodable for some methods, or decoded into something else for others: any clear status.
      const odd: Array<[string, Uint8Array]> = [
        ["invalid UTF-8 in field 1", new Uint8Array([0x0a, 0x02, 0xc3, 0x28])],
        ["failures nested 200 deep", new Uint8Array(deep(200))],
      ];
      for (const spec of all) {
        for (const [label, bytes] of garbage) await session.check(spec, `raw ${label}`, true, () => session.callRaw(spec, bytes), "INVALID_ARGUMENT");
        for (const [label, bytes] of [...odd, ["random bytes", rng.bytes(1 + rng.int(100))] as [string, Uint8Array]]) {
          await session.check(spec, `raw ${label}`, false, () => session.callRaw(spec, bytes));
        }
      }
      const huge = new Uint8Array(DEFAULT_MAX_MESSAGE_BYTES + 1024);
      const big = await outcome(session.callRaw(all[0]!, huge));
      expect(big.ok ? "OK" : big.code).toBe("RESOURCE_EXHAUSTED");
      expect(session.problems, session.problems.join("\n")).toEqual([]);
    } finally {
      await session.closeIntact();
    }
  });
});

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

/**
 * The world a scenario runs in: its own fresh database on the chaos
 * Postgres (migrated by `dex migrate`, plus the chaos schema), its processes,
 * its clients, a seeded PRNG and a log that prints elapsed time.
 */
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import postgres from "postgres";
import { TaskQueueType } from "@dex/proto";
import { createClient, type Client } from "@dex/sdk";
import { freePort } from "@dex/server";
import type { Check, Expectations } from "./invariants.js";
import { ProcessGroup, ServerSlot, WorkerSlot, type WorkerConfig } from "./processes.js";
import type { OwnedPostgres } from "./postgres.js";
import type { Profile } from "./profiles.js";
import type { Rng } from "./rng.js";
import { CHAOS_SCHEMA_SQL } from "./workload.js";

export interface ScenarioOutcome {
  /** What the scenario did, one line each (workflows started, faults injected, times). */
  did: string[];
  /** What the invariant checker holds the database to. */
  expect: Expectations;
  /** Checks only this scenario can make (it saw the grants, the answers, the exits). */
  checks: Check[];
}

export interface Scenario {
  name: string;
  summary: string;
  run(ctx: ScenarioContext): Promise<ScenarioOutcome>;
}

export class ScenarioContext {
  private readonly clients: Client[] = [];
  private readonly slots: Array<ServerSlot | WorkerSlot> = [];
  private readonly began = Date.now();
  private servers = 0;
  /** The suite's own Postgres, which a scenario may restart; undefined with --database-url. */
  postgres: OwnedPostgres | undefined;

  constructor(
    readonly name: string,
    readonly profile: Profile,
    readonly rng: Rng,
    readonly databaseUrl: string,
    readonly sql: postgres.Sql,
    readonly group: ProcessGroup,
    /** --workflows, when given. */
    readonly workflowsOverride: number | undefined,
  ) {}

  log(message: string): void {
    const seconds = ((Date.now() - this.began) / 1000).toFixed(1).padStart(6);
    process.stdout.write(`  ${seconds}s  ${message}\n`);
  }

  workflows(fromProfile: number): number {
    return this.workflowsOverride ?? fromProfile;
  }

  /** A `dex server` process on a free port of its own, started. */
  /** `options`: another database URL (through a proxy) and extra environment for the server. */
  async startServer(options: { databaseUrl?: string; env?: Record<string, string> } = {}): Promise<ServerSlot> {
    const slot = new ServerSlot(this.group, { name: `server-${++this.servers}`, databaseUrl: options.databaseUrl ?? this.databaseUrl, port: await freePort(), env: options.env });
    this.slots.push(slot);
    await slot.start();
    return slot;
  }

  worker(name: string, config: Omit<WorkerConfig, "databaseUrl">): WorkerSlot {
    const slot = new WorkerSlot(this.group, name, { ...config, databaseUrl: this.databaseUrl });
    this.slots.push(slot);
    return slot;
  }

  client(address: string): Client {
    const client = createClient({ address });
    this.clients.push(client);
    return client;
  }

  /** Queues are created by an administrator, never on first use: these are the ones the scenarios use. */
  async createQueues(client: Client, queues: Array<{ name: string; type: "workflow" | "activity" }>): Promise<void> {
    for (const q of queues) {
      await client.raw.queues.createTaskQueue({ name: q.name, type: q.type === "workflow" ? TaskQueueType.WORKFLOW : TaskQueueType.ACTIVITY });
    }
  }

  /** Ends every process of the scenario: SIGTERM (graceful), SIGKILL for anything still there after 10 s. */
  async close(): Promise<void> {
    for (const client of this.clients) client.close();
    await this.group.close();
  }

  /** Servers and workers that exited without being told to (each was restarted). */
  crashCheck(): Check {
    const crashes = this.slots.flatMap((slot) => slot.crashes);
    return check("no dex server or worker process exited on its own", crashes.length === 0, `${this.slots.length} processes watched`, crashes);
  }

  elapsedMs(): number {
    return Date.now() - this.began;
  }
}

/** A fresh database for one scenario, migrated by `dex migrate` (the real command), with the chaos schema. */
export async function createScenarioDatabase(
  adminUrl: string,
  scenario: string,
  group: ProcessGroup,
): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `dex_chaos_${scenario.replace(/-/g, "_")}_${randomBytes(3).toString("hex")}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  await group.runDex("migrate", ["migrate", "--database-url", url.toString()], {});
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(CHAOS_SCHEMA_SQL);
  } finally {
    await sql.end();
  }
  return {
    url: url.toString(),
    name,
    drop: async () => {
      const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await admin.end();
      }
    },
  };
}

export async function scenarioLogDir(root: string, scenario: string): Promise<string> {
  const dir = join(root, scenario);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** A check from a condition and its counts. */
export function check(name: string, ok: boolean, detail: string, violations: string[] = []): Check {
  return { name, ok, detail, violations: violations.slice(0, 5).concat(violations.length > 5 ? [`... and ${violations.length - 5} more`] : []) };
}

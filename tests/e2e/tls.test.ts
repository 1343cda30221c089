/**
 * TLS and mutual TLS on the gRPC port (issue 5), and the server's max message
 * size. A throwaway CA, server certificate (for 127.0.0.1 and localhost) and
 * client certificates are made with openssl in a temporary directory; the
 * server, SDK workers, clients and the CLI run for real. Skipped, saying why,
 * where openssl is missing.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createActivityWorker, createClient, createWorkflowWorker, DexError, type TlsOptions, type Worker, type WorkflowContext } from "@dex/sdk";
import { createApiKey, freePort, startServer, type DexServer } from "@dex/server";
import postgres from "postgres";
import { createTestDatabase, E2E_TEST_TIMEOUT_MS, type TestDatabase } from "@dex/testing";
import { DEFAULT_QUEUES, quietLogger } from "../support/harness.js";
import { dexCommand, repoRoot, runDex } from "../support/server-process.js";

function missingOpenssl(): string | undefined {
  const probe = spawnSync("openssl", ["version"]);
  return probe.error || probe.status !== 0 ? "openssl is not on PATH" : undefined;
}
const skipReason = missingOpenssl();
if (skipReason) console.warn(`SKIPPED tls.test.ts: ${skipReason}; install openssl (Debian: apt-get install openssl) to run the TLS tests`);

/** File paths of the throwaway PKI. */
interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  /** Signed by `ca`, for mutual TLS. */
  clientCert: string;
  clientKey: string;
  /** Another CA, which the server does not know, and a client certificate it signed. */
  strangerCa: string;
  strangerCert: string;
  strangerKey: string;
}

/** P-256 keys: quick to generate, and every TLS stack takes them. Valid for one day. */
function makePki(dir: string): Pki {
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const makeCa = (name: string) =>
    openssl("req", "-x509", ...newKey, "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "1", "-subj", `/CN=dex test ${name}`,
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  let serial = 1;
  const makeLeaf = (name: string, ca: string, extensions: string) => {
    openssl("req", ...newKey, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=dex test ${name}`);
    writeFileSync(`${dir}/${name}.ext`, `${extensions}\n`);
    openssl("x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`, "-set_serial", String(++serial),
      "-days", "1", "-out", `${name}.pem`, "-extfile", `${name}.ext`);
  };
  makeCa("ca");
  makeCa("stranger-ca");
  makeLeaf("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth");
  makeLeaf("client", "ca", "extendedKeyUsage=clientAuth");
  makeLeaf("stranger", "stranger-ca", "extendedKeyUsage=clientAuth");
  const at = (file: string) => `${dir}/${file}`;
  return {
    ca: at("ca.pem"), serverCert: at("server.pem"), serverKey: at("server.key"), clientCert: at("client.pem"), clientKey: at("client.key"),
    strangerCa: at("stranger-ca.pem"), strangerCert: at("stranger.pem"), strangerKey: at("stranger.key"),
  };
}

const activities = {
  async greet(name: string) {
    return `hello, ${name}`;
  },
};

async function greeting(ctx: WorkflowContext, name: string) {
  return ctx.activities<typeof activities>().greet(name);
}

/** One call over a fresh client, closed afterwards. */
/** One list call, not retried: these tests are about what the server refuses (a refusal looks like a restart to the SDK's retries). */
async function listWith(address: string, tls: TlsOptions | undefined) {
  const client = createClient({ address, retry: false, ...(tls ? { tls } : {}) });
  try {
    return await client.list();
  } finally {
    client.close();
  }
}

const MAX_MESSAGE_BYTES = 1024 * 1024;

describe.skipIf(skipReason !== undefined)("TLS on the gRPC port", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let dir: string;
  let pki: Pki;
  let ca: Buffer;
  let db: TestDatabase;
  /** TLS, with a 1 MiB message limit; the workers poll it. */
  let server: DexServer;
  /** Mutual TLS, on the same database. */
  let mtls: DexServer;
  const workers: Worker[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(`${tmpdir()}/dex-tls-test-`);
    pki = makePki(dir);
    ca = await readFile(pki.ca);
    db = await createTestDatabase();
    const common = { databaseUrl: db.url, port: 0, ensureQueues: DEFAULT_QUEUES, logger: quietLogger };
    server = await startServer({ ...common, tls: { certFile: pki.serverCert, keyFile: pki.serverKey }, maxMessageBytes: MAX_MESSAGE_BYTES });
    mtls = await startServer({ ...common, tls: { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.ca } });
    workers.push(
      createWorkflowWorker({ address: server.address, tls: { ca }, taskQueue: "default", workflows: { greeting }, logger: quietLogger }),
      createActivityWorker({ address: server.address, tls: { ca }, taskQueue: "default", activities, logger: quietLogger }),
    );
    for (const worker of workers) worker.start();
  });
  afterAll(async () => {
    await Promise.all(workers.map((worker) => worker.shutdown()));
    await Promise.all([server?.close(), mtls?.close()]);
    await db?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe("TLS", () => {
    it("runs a workflow end to end: client, workflow worker and activity worker all over TLS", async () => {
      const client = createClient({ address: server.address, tls: { ca: ca.toString() } }); // a PEM string works as well as a Buffer
      try {
        const handle = await client.start(greeting, { instanceId: "tls-1", input: "Ada" });
        expect(await handle.result()).toBe("hello, Ada");
      } finally {
        client.close();
      }
    });

    it("serves health checking and reflection on the TLS port", async () => {
      const channel = new grpc.Client(server.address, grpc.credentials.createSsl(ca));
      const bytes = (b: Buffer) => b;
      try {
        const health = await new Promise<Buffer>((resolve, reject) =>
          channel.makeUnaryRequest("/grpc.health.v1.Health/Check", bytes, bytes, Buffer.alloc(0), (err, res) => (err ? reject(err) : resolve(res!))),
        );
        expect([...health]).toEqual([0x08, 0x01]); // HealthCheckResponse { status: SERVING }
        const reflection = await new Promise<Buffer>((resolve, reject) => {
          const call = channel.makeBidiStreamRequest("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", bytes, bytes);
          call.on("data", (res: Buffer) => resolve(res));
          call.on("error", reject);
          call.end(Buffer.from([0x3a, 0x00])); // ServerReflectionRequest { list_services: "" }
        });
        expect(reflection.toString("latin1")).toContain("dex.v1.ClientService");
      } finally {
        channel.close();
      }
    });

    it("refuses a plaintext client", async () => {
      await expect(listWith(server.address, undefined)).rejects.toMatchObject({ code: "UNAVAILABLE" });
    });

    it("refuses a client that does not trust the server's CA", async () => {
      const refused = listWith(server.address, { ca: await readFile(pki.strangerCa) });
      await expect(refused).rejects.toBeInstanceOf(DexError);
      await expect(refused).rejects.toMatchObject({ code: "UNAVAILABLE", message: expect.stringMatching(/unable to verify|self[- ]signed|issuer/) });
    });

    it("checks the certificate against the address's host, or against serverName", async () => {
      await expect(listWith(server.address, { ca, serverName: "localhost" })).resolves.toMatchObject({ runs: expect.any(Array) });
      await expect(listWith(server.address, { ca, serverName: "dex.example" })).rejects.toMatchObject({
        code: "UNAVAILABLE",
        message: expect.stringContaining("altnames"),
      });
    });

    it("refuses a request over maxMessageBytes with RESOURCE_EXHAUSTED, and records nothing", async () => {
      const client = createClient({ address: server.address, tls: { ca } });
      try {
        const big = client.start(greeting, { instanceId: "tls-too-big", input: "x".repeat(2 * MAX_MESSAGE_BYTES) });
        await expect(big).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED", message: expect.stringContaining("larger than max") });
        expect((await client.list({ instanceId: "tls-too-big" })).runs).toEqual([]);
      } finally {
        client.close();
      }
    });
  });

  describe("mutual TLS", () => {
    it("refuses a client without a certificate, and one whose certificate another CA signed", async () => {
      await expect(listWith(mtls.address, { ca })).rejects.toMatchObject({ code: "UNAVAILABLE" });
      const stranger = { ca, cert: await readFile(pki.strangerCert), key: await readFile(pki.strangerKey) };
      await expect(listWith(mtls.address, stranger)).rejects.toMatchObject({ code: "UNAVAILABLE" });
    });

    it("serves a client whose certificate the client CA signed", async () => {
      const client = createClient({ address: mtls.address, tls: { ca, cert: await readFile(pki.clientCert), key: await readFile(pki.clientKey) } });
      try {
        // Started through the mutual-TLS server, run by the workers polling the other one.
        const handle = await client.start(greeting, { instanceId: "mtls-1", input: "Grace" });
        expect(await handle.result()).toBe("hello, Grace");
      } finally {
        client.close();
      }
    });

    it("rejects cert without key in the SDK, naming the options", () => {
      expect(() => createClient({ address: mtls.address, tls: { ca, cert: "x" } })).toThrow(/cert and key go together/);
    });
  });

  describe("the CLI", () => {
    it("lists runs with --tls-ca; without it, or with a missing file, prints one line and exits 1", async () => {
      const list = ["workflow", "list", "--address", server.address, "--json"];
      const [ok, plaintext, missing, untrusted] = await Promise.all([
        runDex([...list, "--tls-ca", pki.ca]),
        runDex(list),
        runDex([...list, "--tls-ca", `${dir}/nope.pem`]),
        runDex(list, { DEX_TLS_CA: pki.strangerCa }),
      ]);
      expect(ok.stderr).toBe(""); // no DEP0123 warning for the IP address either
      expect(ok.code).toBe(0);
      expect((JSON.parse(ok.stdout) as Array<{ instanceId: string }>).map((r) => r.instanceId)).toContain("tls-1");
      const oneLine = (run: { code: number | null; stdout: string; stderr: string }, pattern: RegExp) => {
        expect({ code: run.code, stdout: run.stdout }).toEqual({ code: 1, stdout: "" });
        expect(run.stderr).toMatch(/^dex: [^\n]*\n$/);
        expect(run.stderr).toMatch(pattern);
      };
      oneLine(plaintext, /closed the connection.*if it serves TLS, pass --tls-ca/);
      oneLine(missing, /cannot read --tls-ca file .*nope\.pem: no such file/);
      oneLine(untrusted, /does not trust .*pass --tls-ca/);
    });

    it("connects to a mutual-TLS server with --tls-cert and --tls-key, and says what is missing without them", async () => {
      const list = ["workflow", "list", "--address", mtls.address, "--tls-ca", pki.ca, "--json"];
      const [ok, fromEnv, noCert, certOnly] = await Promise.all([
        runDex([...list, "--tls-cert", pki.clientCert, "--tls-key", pki.clientKey]),
        runDex(list, { DEX_TLS_CLIENT_CERT: pki.clientCert, DEX_TLS_CLIENT_KEY: pki.clientKey }),
        runDex(list),
        runDex([...list, "--tls-cert", pki.clientCert]),
      ]);
      expect([ok.code, ok.stderr, fromEnv.code, fromEnv.stderr]).toEqual([0, "", 0, ""]);
      expect(JSON.parse(ok.stdout)).toEqual(JSON.parse(fromEnv.stdout));
      for (const [run, pattern] of [[noCert, /--tls-cert and --tls-key/], [certOnly, /--tls-cert needs the certificate's private key/]] as const) {
        expect(run.code).toBe(1);
        expect(run.stderr).toMatch(/^dex: [^\n]*\n$/);
        expect(run.stderr).toMatch(pattern);
      }
    });

    it("dex server serves mutual TLS from its flags, and a missing certificate file is one line and exit 1", async () => {
      const missing = await runDex(["server", "--database-url", db.url, "--port", "0", "--tls-cert", `${dir}/nope.pem`, "--tls-key", pki.serverKey]);
      expect([missing.code, missing.stderr]).toEqual([1, `dex: cannot read --tls-cert file ${dir}/nope.pem: no such file\n`]);

      const port = await freePort();
      const child = spawn(process.execPath, [...dexCommand, "server", "--host", "127.0.0.1", "--port", String(port), "--insecure-no-auth"], {
        cwd: repoRoot,
        env: { ...process.env, DEX_DATABASE_URL: db.url, DEX_TLS_CERT: pki.serverCert, DEX_TLS_KEY: pki.serverKey, DEX_TLS_CLIENT_CA: pki.ca },
        stdio: ["ignore", "pipe", "pipe"],
      });
      const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
      try {
        let output = "";
        await new Promise<void>((resolve, reject) => {
          child.stdout!.on("data", (chunk: Buffer) => {
            output += chunk.toString();
            if (output.includes("listening on")) resolve();
          });
          child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
          void exited.then((code) => reject(new Error(`dex server exited with ${code}:\n${output}`)));
        });
        expect(output).toContain(`listening on 127.0.0.1:${port} (TLS, client certificates required)`);
        const address = `127.0.0.1:${port}`;
        await expect(listWith(address, { ca })).rejects.toMatchObject({ code: "UNAVAILABLE" });
        const runs = await listWith(address, { ca, cert: await readFile(pki.clientCert), key: await readFile(pki.clientKey) });
        expect(runs.runs.map((r) => r.instanceId)).toContain("mtls-1");
      } finally {
        child.kill("SIGTERM");
        await exited;
      }
    });
  });

  it("carries an API key over TLS (and the CLI's --api-key with --tls-ca)", async () => {
    const keyed = await startServer({ databaseUrl: db.url, port: 0, logger: quietLogger, requireApiKeys: true, tls: { certFile: pki.serverCert, keyFile: pki.serverKey } });
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const { text } = await createApiKey(sql, { name: "tls-client", role: "client" });
      const withKey = createClient({ address: keyed.address, tls: { ca }, apiKey: text });
      try {
        expect((await withKey.list({ instanceId: "tls-1" })).runs).toHaveLength(1);
      } finally {
        withKey.close();
      }
      await expect(listWith(keyed.address, { ca })).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
      const cli = await runDex(["workflow", "list", "--address", keyed.address, "--tls-ca", pki.ca, "--api-key", text, "--json", "--id", "tls-1"]);
      expect([cli.code, cli.stderr]).toEqual([0, ""]);
      expect((JSON.parse(cli.stdout) as Array<{ instanceId: string }>).map((r) => r.instanceId)).toEqual(["tls-1"]);
    } finally {
      await sql.end();
      await keyed.close();
    }
  });

  it("startServer says which TLS file it cannot read, and refuses a key that does not match", async () => {
    const base = { databaseUrl: db.url, port: 0, logger: quietLogger };
    await expect(startServer({ ...base, tls: { certFile: pki.serverCert, keyFile: `${dir}/nope.key` } })).rejects.toThrow(
      `cannot read the TLS private key file ${dir}/nope.key`,
    );
    await expect(startServer({ ...base, tls: { certFile: pki.serverCert, keyFile: pki.clientKey } })).rejects.toThrow(/not usable: .*key values mismatch/);
    await expect(startServer({ ...base, tls: { certFile: pki.serverCert, keyFile: pki.serverKey, requireClientCert: true } })).rejects.toThrow(
      /requireClientCert needs the CA/,
    );
  });
});

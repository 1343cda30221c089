/**
 * The web UI in a real browser (issue 16): `dex server` with API keys required serves the UI and
 * the dex.v1 services over Connect; Debian's chromium, driven by puppeteer-core, finds a run by
 * its instance id, opens it, sees the timeline, sends the event the run waits for, and sees the run
 * complete without a reload. A client key is refused what only admins may do (terminate, pause a
 * queue) and the UI shows the server's error; an admin key may. Screenshots of each page go to
 * tests/e2e/artifacts/web-ui/ (gitignored).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { createActivityWorker, createClient, createWorkflowWorker, type Worker, type WorkflowContext } from "@dex/sdk";
import { freePort } from "@dex/server";
import { createTestDatabase, DEFAULT_WAIT_MS, E2E_TEST_TIMEOUT_MS, type TestDatabase } from "@dex/testing";
import { quietLogger } from "../support/harness.js";
import { dexCommand, repoRoot, runDex, startServerProcess, type ServerProcess } from "../support/server-process.js";
import { startProcess, stopProcess } from "../support/spawned.js";

// The few browser globals the page functions below use (they run in chromium, not here); the
// check program has no DOM lib.
declare const document: { querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }> & Iterable<{ textContent: string | null }> };
declare const window: { dexMark?: number };

const CHROMIUM = process.env.DEX_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = `${repoRoot}tests/e2e/artifacts/web-ui/`;

const activities = {
  async reserveStock(order: string) {
    return `reserved ${order}`;
  },
};

async function approval(ctx: WorkflowContext, order: string) {
  const reserved = await ctx.activities<typeof activities>().reserveStock(order);
  ctx.setStatus("waiting for approval");
  const decision = await ctx.waitForEvent<{ approved: boolean }>("approval");
  return { reserved, decision };
}

if (!existsSync(CHROMIUM)) console.warn(`web UI browser test skipped: no chromium at ${CHROMIUM} (apt-get install chromium, or set DEX_CHROMIUM)`);

describe.skipIf(!existsSync(CHROMIUM))("the web UI in chromium", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let db: TestDatabase;
  let server: ServerProcess;
  let uiUrl: string;
  let browser: Browser;
  let page: Page;
  const workers: Worker[] = [];
  const closers: Array<() => void> = [];
  const keys = { admin: "", client: "", worker: "" };

  beforeAll(async () => {
    // The server serves server/ui/dist: build it from this checkout's sources (under a second).
    const built = spawnSync(process.execPath, [`${repoRoot}server/ui/build.mjs`], { encoding: "utf8" });
    if (built.status !== 0) throw new Error(`building the web UI failed:\n${built.stdout}${built.stderr}`);
    db = await createTestDatabase();
    server = await startServerProcess({ databaseUrl: db.url, port: await freePort(), requireApiKeys: true, env: { DEX_UI_PORT: String(await freePort()) } });
    uiUrl = /dex web UI at (\S+)/.exec(server.output())![1]!;
    for (const role of ["admin", "client", "worker"] as const) {
      const created = await runDex(["auth", "create", "--name", `ui-${role}`, "--role", role, "--json", "--database-url", db.url]);
      expect(created.stderr).toBe("");
      keys[role] = (JSON.parse(created.stdout) as { key: string }).key;
    }
    workers.push(createWorkflowWorker({ address: server.address, apiKey: keys.worker, taskQueue: "default", workflows: { approval }, logger: quietLogger }));
    workers.push(createActivityWorker({ address: server.address, apiKey: keys.worker, taskQueue: "default", activities, logger: quietLogger }));
    const admin = createClient({ address: server.address, apiKey: keys.admin });
    for (const type of [1, 2]) await admin.raw.queues.createTaskQueue({ name: "default", type });
    admin.close();
    for (const worker of workers) worker.start();
    await mkdir(ARTIFACTS, { recursive: true });
    browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    // The UI asks before cancel and terminate; the test says yes.
    page.on("dialog", (dialog) => void dialog.accept());
    page.on("pageerror", (err) => console.error("web UI page error:", err));
  });
  afterAll(async () => {
    await browser?.close();
    for (const close of closers) close();
    await Promise.all(workers.map((w) => w.shutdown()));
    server?.child.kill("SIGTERM");
    await server?.exited;
    await db?.drop();
  });

  /** Waits, up to the suite's deadline, until the page shows text matching `pattern` in `selector`. */
  const waitForText = (selector: string, pattern: RegExp) =>
    page.waitForFunction(
      (sel: string, source: string, flags: string) => [...document.querySelectorAll(sel)].some((el) => new RegExp(source, flags).test(el.textContent ?? "")),
      { timeout: DEFAULT_WAIT_MS, polling: 100 },
      selector,
      pattern.source,
      pattern.flags,
    );
  const screenshot = (name: string) => page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });
  const useKey = async (key: string) => {
    await page.$eval('input[name="api-key"]', (el) => ((el as unknown as { value: string }).value = ""));
    await page.type('input[name="api-key"]', key);
    await Promise.all([page.waitForNavigation(), page.click('form.key button[type="submit"]')]);
  };

  it("serves the API over Connect with the same key checks as gRPC", async () => {
    const listRuns = (key?: string) =>
      fetch(`http://${uiUrl.split("/")[2]}/dex.v1.ClientService/ListRuns`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
        body: "{}",
      });
    const refused = await listRuns();
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { code: string; message: string })).toMatchObject({ code: "unauthenticated", message: expect.stringMatching(/requires an API key/) });
    const asWorker = await listRuns(keys.worker);
    expect(((await asWorker.json()) as { code: string }).code).toBe("permission_denied");
    expect((await listRuns(keys.client)).status).toBe(200);
    // Validation answers as on gRPC: the handler's own code and message.
    const describe = await fetch(`http://${uiUrl.split("/")[2]}/dex.v1.ClientService/DescribeRun`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${keys.client}` },
      body: "{}",
    });
    expect(describe.status).toBe(400);
    expect((await describe.json()) as { code: string; message: string }).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/run/) });
  });

  it("finds a run by instance id, shows its timeline, sends its event, and sees it complete without reloading", async () => {
    const client = createClient({ address: server.address, apiKey: keys.client });
    closers.push(() => client.close());
    const handle = await client.start(approval, { instanceId: "ui-order-7", input: "order-7" });
    await client.start(approval, { instanceId: "ui-order-8", input: "order-8" });

    await page.goto(uiUrl);
    // No key yet: the server's refusal, shown as it is.
    await waitForText('[role="alert"]', /UNAUTHENTICATED.*requires an API key/);
    await screenshot("0-no-key");
    await useKey(keys.client);

    await page.type('input[name="instance-id"]', "ui-order-7");
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll("table.runs tbody tr")];
      return rows.length === 1 && rows[0]!.textContent!.includes("ui-order-7");
    }, { timeout: DEFAULT_WAIT_MS, polling: 100 });
    await screenshot("1-runs");

    await page.click(`tr[data-run-id="${handle.runId}"] a`);
    await waitForText('[data-testid="instance-id"]', /^ui-order-7$/);
    // Live: the page re-reads the run until the activity is done and the wait has begun.
    await waitForText('[data-testid="waiting-reason"]', /approval/);
    await waitForText("dd", /^waiting for approval$/);
    await page.waitForSelector('[data-testid="timeline"] .bar.completed', { timeout: DEFAULT_WAIT_MS });
    await waitForText("table.history summary", /^activity completed$/);
    expect(await page.$eval('[data-testid="run-status"]', (el) => el.textContent)).toBe("RUNNING");
    await screenshot("2-run-waiting");

    // A client key may not terminate: the server refuses and the UI says why.
    await page.click("button.danger");
    await waitForText('[data-testid="action-result"]', /terminate refused: PERMISSION_DENIED/);

    // Marks this document: still there at the end proves the page never reloaded.
    await page.evaluate(() => (window.dexMark = 42));
    await page.type('input[name="event-name"]', "approval");
    await page.type('input[name="event-payload"]', '{"approved": true}');
    await page.click('form.send-event button[type="submit"]');
    await waitForText('[data-testid="action-result"]', /send event: done/);
    await waitForText('[data-testid="run-status"]', /^COMPLETED$/);
    await waitForText('[data-testid="result"]', /"approved": true/);
    expect(await page.evaluate(() => window.dexMark)).toBe(42);
    await waitForText("table.history summary", /^run completed$/);
    await screenshot("3-run-completed");
    expect(await handle.result()).toEqual({ reserved: "reserved order-7", decision: { approved: true } });
  });

  it("shows task queues; pausing is refused for a client key and done for an admin key", async () => {
    await page.goto(`${uiUrl}#/queues`);
    const row = 'tr[data-queue="WORKFLOW/default"]';
    await page.waitForSelector(row, { timeout: DEFAULT_WAIT_MS });
    await page.click(`${row} button`);
    await waitForText('[data-testid="action-result"]', /pause refused: PERMISSION_DENIED/);
    await screenshot("4-queues-client-refused");

    await useKey(keys.admin);
    await page.waitForSelector(row, { timeout: DEFAULT_WAIT_MS });
    await page.click(`${row} button`);
    await waitForText(`${row} td`, /^paused$/);
    await screenshot("5-queues-admin-paused");
    await page.click(`${row} button`);
    await waitForText(`${row} td`, /^active$/);
  });

  it("lists schedules and pauses one", async () => {
    const created = await runDex(["schedule", "create", "ui-hourly", "--workflow", "approval", "--input", '"hourly"', "--every", "1h", "--address", server.address, "--api-key", keys.admin]);
    expect(created).toMatchObject({ code: 0, stderr: "" });
    await page.goto(`${uiUrl}#/schedules`);
    const row = 'tr[data-schedule-id="ui-hourly"]';
    await waitForText(`${row} td`, /^active$/);
    await page.click(`${row} button`);
    await waitForText('[data-testid="action-result"]', /pause: done/);
    await waitForText(`${row} td`, /^paused$/);
    await screenshot("6-schedules");
  });
});

describe("the web UI's flags", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  it("`dex dev` serves the UI by default and prints its URL; the app's files are served from the compiled server", async () => {
    const dev = await startProcess([...dexCommand, "dev", "--port", String(await freePort())], /press Ctrl-C/);
    try {
      const url = /web UI: (http:\/\/\S+)/.exec(dev.output())?.[1];
      expect(url, dev.output()).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      const [html, script, missing] = await Promise.all([fetch(url!), fetch(`${url}app.js`), fetch(`${url}nothing-here`)]);
      expect(html.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(html.headers.get("content-security-policy")).toContain("default-src 'self'");
      expect(await html.text()).toContain('<script type="module" src="/app.js">');
      expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
      expect(missing.status).toBe(404);
    } finally {
      await stopProcess(dev);
    }
  });

  it("says in one line what is wrong with a UI port", async () => {
    const [dev, server] = await Promise.all([
      runDex(["dev", "--ui-port", "web"]),
      runDex(["server", "--ui-port", "70000", "--database-url", "postgres://dex@127.0.0.1:1/dex"]),
    ]);
    for (const run of [dev, server]) {
      expect({ code: run.code, stdout: run.stdout }).toEqual({ code: 1, stdout: "" });
      expect(run.stderr).toMatch(/^dex: [^\n]*--ui-port[^\n]*\n$/);
    }
  });
});

/**
 * The web UI in a real browser (issue 16): `dex server` with API keys required serves the UI and
 * the dex.v1 services over Connect; Debian's chromium, driven by puppeteer-core, finds a run by
 * its instance id, opens it, sees the timeline, sends the event the run waits for, and sees the run
 * complete without a reload (the page follows the history with a long poll). The task queues page
 * shows each queue's last poll; a client key is refused what only admins may do (terminate, pause a
 * queue, change its capacity) and the UI shows the server's error; an admin key may. The runs
 * filters: web-ui-runs.test.ts; query, update and reset: web-ui-run-actions.test.ts. Screenshots of
 * each page go to tests/e2e/artifacts/web-ui/ (gitignored).
 */
import type { Page } from "puppeteer-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createActivityWorker, createClient, createWorkflowWorker } from "@dex/sdk";
import { freePort } from "@dex/server";
import { DEFAULT_WAIT_MS, E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { quietLogger } from "../support/harness.js";
import { dexCommand, runDex } from "../support/server-process.js";
import { startProcess, stopProcess } from "../support/spawned.js";
import { hasChromium, startWebUi, type WebUi } from "../support/web-ui.js";
import { activities, approval, busy } from "./fixtures/web-ui-workflows.js";

// The few browser globals the page functions below use (they run in chromium, not here).
declare const document: {
  visibilityState: string;
  querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }> & Iterable<{ textContent: string | null }>;
};
declare const window: { dexMark?: number; dexReads?: Array<[string, number]>; fetch: (...args: unknown[]) => Promise<unknown> };
declare const crypto: { randomUUID?: unknown };
declare const performance: { now(): number };

describe.skipIf(!hasChromium)("the web UI in chromium", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let ui: WebUi;
  const closers: Array<() => void> = [];

  beforeAll(async () => {
    ui = await startWebUi({
      workers: (address, apiKey) => [
        createWorkflowWorker({ address, apiKey, taskQueue: "default", workflows: { approval, busy }, logger: quietLogger }),
        createActivityWorker({ address, apiKey, taskQueue: "default", activities, logger: quietLogger }),
      ],
    });
  });
  // Tabs a test opens (ui.newTab): closed after it, and the shared page brought back to the front, as
  // a hidden page would not follow (that is the point) and the next test expects it to.
  const tabs: Page[] = [];
  afterEach(async () => {
    for (const tab of tabs.splice(0)) await tab.close();
    await ui?.page.bringToFront();
  });
  afterAll(async () => {
    for (const close of closers) close();
    await ui?.close();
  });

  it("serves the API over Connect with the same key checks as gRPC", async () => {
    const origin = new URL(ui.localUrl).origin;
    const listRuns = (key?: string) =>
      fetch(`${origin}/dex.v1.ClientService/ListRuns`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
        body: "{}",
      });
    const refused = await listRuns();
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { code: string; message: string })).toMatchObject({ code: "unauthenticated", message: expect.stringMatching(/requires an API key/) });
    const asWorker = await listRuns(ui.keys.worker);
    expect(((await asWorker.json()) as { code: string }).code).toBe("permission_denied");
    expect((await listRuns(ui.keys.client)).status).toBe(200);
    // Validation answers as on gRPC: the handler's own code and message.
    const describe = await fetch(`${origin}/dex.v1.ClientService/DescribeRun`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ui.keys.client}` },
      body: "{}",
    });
    expect(describe.status).toBe(400);
    expect((await describe.json()) as { code: string; message: string }).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/run/) });
  });

  it("finds a run by instance id, shows its timeline, sends its event, and sees it complete without reloading", async () => {
    const { page, waitForText, screenshot } = ui;
    const client = createClient({ address: ui.server.address, apiKey: ui.keys.client });
    closers.push(() => client.close());
    const handle = await client.start(approval, { instanceId: "ui-order-7", input: "order-7" });
    await client.start(approval, { instanceId: "ui-order-8", input: "order-8" });

    await page.goto(ui.uiUrl);
    // No key yet: the server's refusal, shown as it is.
    await waitForText('[role="alert"]', /UNAUTHENTICATED.*requires an API key/);
    await screenshot("0-no-key");
    await ui.useKey("client");

    await page.type('input[name="instance"]', "ui-order-7");
    await ui.waitForRows("table.runs tbody tr", "td:first-child", ["ui-order-7"]);
    await screenshot("1-runs");

    // What the page asks GetRunHistory for: it should read each event once, then long-poll after the last.
    const historyReads: Array<{ afterSequence?: string; waitNewEvents?: boolean }> = [];
    page.on("request", (request) => {
      if (request.url().endsWith("/dex.v1.ClientService/GetRunHistory")) historyReads.push(JSON.parse(request.postData() ?? "{}") as (typeof historyReads)[number]);
    });
    await page.click(`tr[data-run-id="${handle.runId}"] a`);
    await waitForText('[data-testid="instance-id"]', /^ui-order-7$/);
    // Live: the page follows the run until the activity is done and the wait has begun.
    await waitForText('[data-testid="waiting-reason"]', /approval/);
    await waitForText("dd", /^waiting for approval$/);
    await page.waitForSelector('[data-testid="timeline"] .bar.completed', { timeout: DEFAULT_WAIT_MS });
    await waitForText("table.history summary", /^activity completed$/);
    expect(await page.$eval('[data-testid="run-status"]', (el) => el.textContent)).toBe("RUNNING");
    await screenshot("2-run-waiting");

    // A client key may not terminate: the server refuses and the UI says why.
    await page.click("button.terminate");
    await waitForText('[data-testid="action-result"]', /terminate refused: PERMISSION_DENIED/);

    // Marks this document: still there at the end proves the page never reloaded.
    await page.evaluate(() => (window.dexMark = 42));
    // Plain http beyond localhost (support/web-ui.ts): the event's default id cannot come from crypto.randomUUID.
    expect(await page.evaluate(() => typeof crypto.randomUUID)).toBe("undefined");
    await page.type('input[name="event-name"]', "approval");
    await page.type('input[name="event-payload"]', '{"approved": true}');
    await page.click('form.send-event button[type="submit"]');
    await waitForText('[data-testid="action-result"]', /send event: done/);
    await waitForText('[data-testid="run-status"]', /^COMPLETED$/);
    await waitForText('[data-testid="result"]', /"approved": true/);
    expect(await page.evaluate(() => window.dexMark)).toBe(42);
    await waitForText("table.history summary", /^run completed$/);
    // Each event once: new events were appended to what was read, not read again.
    const sequences = await page.$$eval("table.history tbody tr td:first-child", (cells) => cells.map((c) => Number(c.textContent)));
    expect(sequences).toEqual(sequences.map((_, i) => i + 1));
    // Read from the start once; every later read asks only for what follows the last event seen, and waits.
    const after = historyReads.map((r) => Number(r.afterSequence ?? 0));
    expect(after[0]).toBe(0);
    expect(after.slice(1).every((seq, i) => seq > 0 && seq >= after[i]!)).toBe(true);
    expect(historyReads.every((r) => r.waitNewEvents === true)).toBe(true);
    await screenshot("3-run-completed");
    expect(await handle.result()).toEqual({ reserved: "reserved order-7", decision: { approved: true } });
  });

  it("shows task queues with their last poll; pause and capacity changes are refused for a client key and done for an admin key", async () => {
    const { page, waitForText, screenshot } = ui;
    await page.goto(`${ui.uiUrl}#/queues`);
    const row = 'tr[data-queue="WORKFLOW/default"]';
    await page.waitForSelector(row, { timeout: DEFAULT_WAIT_MS });
    // The workers poll "default": the server records it (in batches, within seconds).
    await waitForText(`${row} [data-testid="last-poll"]`, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \(\d+ s ago\)$/);
    await waitForText('tr[data-queue="ACTIVITY/default"] [data-testid="last-poll"]', /s ago/);
    await page.type(`${row} input[name="capacity"]`, "5");
    await page.click(`${row} form.capacity button`);
    await waitForText('[data-testid="action-result"]', /capacity change refused: PERMISSION_DENIED.*admin/);
    await page.click(`${row} button.pause`);
    await waitForText('[data-testid="action-result"]', /pause refused: PERMISSION_DENIED/);
    // The refused capacity stays in its input to fix or retry: pressing Set again sends it again.
    await page.click(`${row} form.capacity button`);
    await waitForText('[data-testid="action-result"]', /capacity change refused: PERMISSION_DENIED/);
    await screenshot("4-queues-client-refused");

    await ui.useKey("admin");
    await page.waitForSelector(row, { timeout: DEFAULT_WAIT_MS });
    await page.type(`${row} input[name="capacity"]`, "5");
    await page.click(`${row} form.capacity button`);
    await waitForText('[data-testid="action-result"]', /^capacity of the workflow queue default: 5$/);
    await waitForText(`${row} [data-testid="capacity"]`, /^5$/);
    // Not a count: said so before anything is sent.
    await ui.fill(`${row} input[name="capacity"]`, "-1");
    await page.click(`${row} form.capacity button`);
    await waitForText('[data-testid="action-result"]', /capacity: write a whole number/);
    await page.click(`${row} button.pause`);
    await waitForText(`${row} td`, /^paused$/);
    await screenshot("5-queues-admin-paused");
    await page.click(`${row} button.pause`);
    await waitForText(`${row} td`, /^active$/);
    await ui.fill(`${row} input[name="capacity"]`, "0");
    await page.click(`${row} form.capacity button`);
    await waitForText(`${row} [data-testid="capacity"]`, /^unlimited$/);
    const admin = createClient({ address: ui.server.address, apiKey: ui.keys.admin });
    closers.push(() => admin.close());
    const { queues } = await admin.raw.queues.listTaskQueues({});
    expect(queues.find((q) => q.name === "default" && q.type === 1)).toMatchObject({ capacity: 0, status: 1 });
  });

  it("follows a busy run without a tight loop: history reads ~500 ms apart, one describe between two", async () => {
    const client = createClient({ address: ui.server.address, apiKey: ui.keys.client });
    closers.push(() => client.close());
    const handle = await client.start(busy, { instanceId: "ui-busy" });
    const tab = await ui.newTab("client");
    tabs.push(tab);
    // Timed in the page, as the app calls fetch: what the test process sees of requests comes late and bunched under load.
    await tab.evaluateOnNewDocument(() => {
      const reads: Array<[string, number]> = (window.dexReads = []);
      const fetch = window.fetch;
      window.fetch = (...args: unknown[]) => {
        const kind = /ClientService\/(GetRunHistory|DescribeRun)$/.exec(String(args[0]))?.[1];
        if (kind) reads.push([kind, performance.now()]);
        return fetch(...args);
      };
    });
    await tab.goto(`${ui.uiUrl}#/runs/${handle.runId}`);
    const readsOf = () => tab.evaluate(() => window.dexReads ?? []);
    // Review 2 saw 13 requests a second here; six history reads are enough to see the pace.
    await waitFor(async () => (await readsOf()).filter(([kind]) => kind === "GetRunHistory").length >= 6, { message: "six history reads of the busy run" });
    await handle.signal("stop");
    await tab.waitForFunction(() => document.querySelectorAll('[data-testid="run-status"]')[0]?.textContent === "COMPLETED", { timeout: DEFAULT_WAIT_MS });
    const reads = await readsOf();
    const history = reads.filter(([kind]) => kind === "GetRunHistory").map(([, at]) => at);
    const gaps = history.slice(1).map((at, i) => Math.round(at - history[i]!));
    expect(Math.min(...gaps), `gaps between history reads (ms): ${gaps.join(", ")}`).toBeGreaterThanOrEqual(490);
    const kinds = reads.map(([kind]) => kind).join(" ");
    expect(kinds).not.toMatch(/DescribeRun DescribeRun/);
  });

  it("holds no request in a hidden tab (6 HTTP/1.1 connections per host), and catches up when shown again", async () => {
    const client = createClient({ address: ui.server.address, apiKey: ui.keys.client });
    closers.push(() => client.close());
    const handle = await client.start(approval, { instanceId: "ui-hidden", input: "order-9" });
    const tab = await ui.newTab("client");
    tabs.push(tab);
    const held = new Set<unknown>();
    const letGo = new Set<unknown>();
    let hidden = false;
    let readsWhileHidden = 0;
    tab.on("request", (r) => {
      const kind = /ClientService\/(GetRunHistory|DescribeRun)$/.exec(r.url())?.[1];
      if (hidden && kind) readsWhileHidden++;
      if (kind === "GetRunHistory") held.add(r);
    });
    tab.on("requestfinished", (r) => held.delete(r));
    tab.on("requestfailed", (r) => held.delete(r) && letGo.add(r));
    await tab.goto(`${ui.uiUrl}#/runs/${handle.runId}`);
    await tab.waitForFunction(() => [...document.querySelectorAll("dd")].some((d) => d.textContent === "waiting for approval"), { timeout: DEFAULT_WAIT_MS });
    // The run now waits: once the page shows its whole history, the history read it has out is the
    // long poll (held until the run writes an event, or the server's ~20 s cap).
    const length = (await handle.history()).length;
    await waitFor(async () => (await tab.$$eval("table.history tbody tr", (rows) => rows.length)) === length, { message: `the page showing all ${length} events` });
    await waitFor(() => held.size === 1, { message: "the run page's long poll" });
    const longPoll = [...held][0];

    hidden = true;
    const front = await ui.newTab("client");
    tabs.push(front);
    expect(await tab.evaluate(() => document.visibilityState)).toBe("hidden");
    // Let go at once (aborted), not answered at the cap: six such tabs left a seventh unable to load.
    await waitFor(() => letGo.has(longPoll), { message: "the hidden tab's long poll aborted" });
    await handle.signal("approval", { approved: true });
    await handle.result();
    await front.goto(`${ui.uiUrl}#/runs`);
    await front.waitForFunction(() => document.querySelectorAll("table.runs tbody tr").length > 0, { timeout: DEFAULT_WAIT_MS });
    hidden = false;
    expect(readsWhileHidden).toBe(0);

    await tab.bringToFront();
    await tab.waitForFunction(() => document.querySelectorAll('[data-testid="run-status"]')[0]?.textContent === "COMPLETED", { timeout: DEFAULT_WAIT_MS });
  });

  it("lists schedules and pauses one", async () => {
    const { page, waitForText } = ui;
    const created = await runDex(["schedule", "create", "ui-hourly", "--workflow", "approval", "--input", '"hourly"', "--every", "1h", "--address", ui.server.address, "--api-key", ui.keys.admin]);
    expect(created).toMatchObject({ code: 0, stderr: "" });
    await page.goto(`${ui.uiUrl}#/schedules`);
    const row = 'tr[data-schedule-id="ui-hourly"]';
    await waitForText(`${row} td`, /^active$/);
    await page.click(`${row} button`);
    await waitForText('[data-testid="action-result"]', /pause: done/);
    await waitForText(`${row} td`, /^paused$/);
    // Its request id is picked by the page (not crypto.randomUUID: undefined on plain http beyond localhost).
    await page.click(`${row} button:last-child`);
    await waitForText('[data-testid="action-result"]', /trigger: done/);
    await waitForText(`${row} td:nth-child(5)`, /^1$/);
    await ui.screenshot("6-schedules");
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

/**
 * The runs page's filters in a real browser (issue 16): by task queue, by labels, by creation time,
 * combined; kept in the URL hash, so the filtered view survives a reload and a shared link opens
 * it; a filter that cannot be read says what to fix. Runs on two workflow queues, no workers needed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Client } from "@dex/sdk";
import type { HTTPRequest } from "puppeteer-core";
import { DEFAULT_WAIT_MS, E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { hasChromium, startWebUi, uiTime, type WebUi } from "../support/web-ui.js";

const ROWS = "table.runs tbody tr";
const INSTANCE = "td:first-child";
const OLDER = ".paging button:last-child";

// The few browser globals the page functions below use (they run in chromium, not here).
declare const document: { querySelectorAll(selector: string): ArrayLike<unknown> };

describe.skipIf(!hasChromium)("the runs page's filters", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let ui: WebUi;
  let client: Client;
  const created: Record<string, Date> = {};

  beforeAll(async () => {
    ui = await startWebUi({ queues: ["ui-orders"], workers: () => [] });
    client = createClient({ address: ui.server.address, apiKey: ui.keys.client });
    const runs: Array<{ instanceId: string; taskQueue: string; labels: Record<string, string> }> = [
      { instanceId: "f-a", taskQueue: "default", labels: { team: "pay", tier: "gold" } },
      { instanceId: "f-b", taskQueue: "ui-orders", labels: { team: "pay" } },
      { instanceId: "f-c", taskQueue: "ui-orders", labels: { team: "ship", note: "a, b" } },
    ];
    for (const run of runs) {
      const handle = await client.start("tally", { ...run, input: { start: 0 } });
      created[run.instanceId] = (await handle.describe()).createTime!;
      // The time filters are typed to the millisecond, as the UI prints times: one run per millisecond.
      const at = created[run.instanceId]!.getTime();
      await waitFor(() => Date.now() > at + 1, { message: "the next millisecond" });
    }
  });
  afterAll(async () => {
    client?.close();
    await ui?.close();
  });

  it("filters by task queue and by labels, and keeps the filters in the URL across a reload", async () => {
    const { page } = ui;
    await page.goto(ui.uiUrl);
    await ui.useKey("client");
    await ui.waitForRows(ROWS, INSTANCE, ["f-a", "f-b", "f-c"]);

    await page.type('input[name="queue"]', "ui-orders");
    await ui.waitForRows(ROWS, INSTANCE, ["f-b", "f-c"]);
    await page.type('input[name="labels"]', "team=pay");
    await ui.waitForRows(ROWS, INSTANCE, ["f-b"]);
    expect(new URL(page.url()).hash).toBe("#/runs?queue=ui-orders&labels=team%3Dpay");
    await ui.screenshot("7-runs-filtered");

    await page.reload();
    await ui.waitForRows(ROWS, INSTANCE, ["f-b"]);
    expect(await page.$eval('input[name="queue"]', (el) => (el as unknown as { value: string }).value)).toBe("ui-orders");
    expect(await page.$eval('input[name="labels"]', (el) => (el as unknown as { value: string }).value)).toBe("team=pay");

    // A shared link: two labels, both must match.
    await page.goto(`${ui.uiUrl}#/runs?labels=${encodeURIComponent("team=pay, tier=gold")}`);
    await ui.waitForRows(ROWS, INSTANCE, ["f-a"]);
    expect(await page.$eval('input[name="queue"]', (el) => (el as unknown as { value: string }).value)).toBe("");

    // The header's Runs link clears them.
    await page.click('header a[href="#/runs"]');
    await ui.waitForRows(ROWS, INSTANCE, ["f-a", "f-b", "f-c"]);
    expect(new URL(page.url()).hash).toBe("#/runs");
  });

  it("filters by creation time, typed as the page prints times, and says what to fix in a filter it cannot read", async () => {
    const { page } = ui;
    await page.goto(`${ui.uiUrl}#/runs?after=${encodeURIComponent(uiTime(created["f-b"]!))}`);
    await ui.waitForRows(ROWS, INSTANCE, ["f-b", "f-c"]);
    await page.type('input[name="before"]', uiTime(created["f-c"]!));
    await ui.waitForRows(ROWS, INSTANCE, ["f-b"]);
    await ui.screenshot("8-runs-time-range");

    await page.type('input[name="labels"]', "team");
    await ui.waitForText('[data-testid="filter-problem"]', /^labels: write key=value pairs/);
    // Once readable, the label filter applies: of the runs created after f-b, only f-c is team=ship.
    await page.type('input[name="labels"]', "=ship");
    await ui.fill('input[name="before"]', "");
    await page.waitForSelector('[data-testid="filter-problem"]', { hidden: true, timeout: DEFAULT_WAIT_MS });
    await ui.waitForRows(ROWS, INSTANCE, ["f-c"]);
    // A value with a comma: written as JSON.
    await ui.fill('input[name="labels"]', '{"note": "a, b"}');
    await ui.waitForRows(ROWS, INSTANCE, ["f-c"]);
    await ui.fill('input[name="labels"]', '{"note": "a"}');
    await ui.waitForText("p", /^No runs match\.$/);
    await page.type('input[name="after"]', "x");
    await ui.waitForText('[data-testid="filter-problem"]', /^created after: ".*x" is not a time/);

    // A link with a status the menu does not list is a problem shown, not a filter sent (review 2: UNSPECIFIED, constructor).
    for (const status of ["UNSPECIFIED", "constructor"]) {
      await page.goto(`${ui.uiUrl}#/runs?status=${status}`);
      await ui.waitForText('[data-testid="filter-problem"]', new RegExp(`^status: "${status}" is not a run status; choose one of CREATED, `));
    }
  });

  it("pages with the new filter's tokens only: after a filter change, Older waits for the new filter's first page", async () => {
    const { page } = ui;
    // 51 runs: a page of 50 and one more.
    for (let i = 0; i < 51; i++) await client.start("tally", { instanceId: `bulk-${i}`, labels: { bulk: "yes" }, input: { start: 0 } });
    await page.goto(`${ui.uiUrl}#/runs?labels=bulk%3Dyes`);
    await page.waitForFunction(() => document.querySelectorAll("table.runs tbody tr").length === 50, { timeout: DEFAULT_WAIT_MS });
    await page.waitForSelector(`${OLDER}:not([disabled])`, { timeout: DEFAULT_WAIT_MS });

    // The new filter's first read is held: until it answers, the page has no token for the new filter.
    let releaseHeld = () => {};
    const released = new Promise<void>((release) => (releaseHeld = release));
    await page.setRequestInterception(true);
    const onRequest = (request: HTTPRequest) => {
      if (request.isInterceptResolutionHandled()) return;
      const held = request.url().endsWith("/ListRuns") && (request.postData() ?? "").includes("statuses");
      void (held ? released : Promise.resolve()).then(() => request.continue().catch(() => {}));
    };
    page.on("request", onRequest);
    try {
      // One change (a menu, not typing, whose half-typed filters would empty the page on the way).
      await page.select('select[name="status"]', "COMPLETED");
      // Review 2: the old filter's page stayed, with its token, and Older sent it with the new filter (INVALID_ARGUMENT).
      await page.waitForSelector(`${OLDER}[disabled]`, { timeout: DEFAULT_WAIT_MS });
      await page.click(OLDER);
      releaseHeld();
      await ui.waitForText("p", /^No runs match\.$/);
      expect(await page.$$eval('[role="alert"]', (els) => els.map((el) => el.textContent))).toEqual([]);
    } finally {
      releaseHeld();
      page.off("request", onRequest);
      await page.setRequestInterception(false);
    }
  });
});

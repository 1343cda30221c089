/**
 * The runs page's filters in a real browser (issue 16): by task queue, by labels, by creation time,
 * combined; kept in the URL hash, so the filtered view survives a reload and a shared link opens
 * it; a filter that cannot be read says what to fix. Runs on two workflow queues, no workers needed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Client } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS, waitFor } from "@dex/testing";
import { hasChromium, startWebUi, uiTime, type WebUi } from "../support/web-ui.js";

const ROWS = "table.runs tbody tr";
const INSTANCE = "td:first-child";

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
      { instanceId: "f-c", taskQueue: "ui-orders", labels: { team: "ship" } },
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
    await page.type('input[name="labels"]', "=ship");
    await ui.waitForRows(ROWS, INSTANCE, []);
    await page.type('input[name="after"]', "x");
    await ui.waitForText('[data-testid="filter-problem"]', /^created after: ".*x" is not a time/);
  });
});

/**
 * A run page's query, update and reset in a real browser (issue 16), against a real worker running
 * `tally` (a query handler "total", an update handler "add" with a validator): a client key may
 * query and update and is refused a reset (admin only, decision 0026) with the server's message;
 * an admin key does all three, and the page links to the new run. The reset ends the old run while
 * its page is open: the page follows without a reload.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, createWorkflowWorker, type Client } from "@dex/sdk";
import { E2E_TEST_TIMEOUT_MS } from "@dex/testing";
import { quietLogger } from "../support/harness.js";
import { hasChromium, startWebUi, type WebUi } from "../support/web-ui.js";
import { tally } from "./fixtures/web-ui-workflows.js";

declare const window: { dexMark?: number };
declare const crypto: { randomUUID?: unknown };

describe.skipIf(!hasChromium)("a run page's query, update and reset", { timeout: E2E_TEST_TIMEOUT_MS }, () => {
  let ui: WebUi;
  let client: Client;

  beforeAll(async () => {
    ui = await startWebUi({
      workers: (address, apiKey) => [createWorkflowWorker({ address, apiKey, taskQueue: "default", workflows: { tally }, logger: quietLogger })],
    });
    client = createClient({ address: ui.server.address, apiKey: ui.keys.client });
  });
  afterAll(async () => {
    client?.close();
    await ui?.close();
  });

  /** Fills a form's inputs (clearing what they held) and submits it. */
  const submit = async (form: string, fields: Record<string, string>) => {
    for (const [name, value] of Object.entries(fields)) await ui.fill(`${form} [name="${name}"]`, value);
    await ui.page.click(`${form} button[type="submit"]`);
  };
  const query = async (name: string, args = "") => submit("form.run-query", { "query-name": name, "query-args": args });
  const update = async (name: string, args: string) => submit("form.run-update", { "update-name": name, "update-args": args, "update-id": "" });

  it("a client key queries and updates, and is refused a reset; an admin key resets and follows the link to the new run", async () => {
    const { page, waitForText, screenshot } = ui;
    const handle = await client.start(tally, { instanceId: "ui-tally-1", input: { start: 10 } });
    await page.goto(ui.uiUrl);
    await ui.useKey("client");
    await page.goto(`${ui.uiUrl}#/runs/${handle.runId}`);
    await waitForText("dd", /^counting$/);

    await query("total");
    await waitForText('[data-testid="query-result"] pre', /^10$/);
    // An unknown query: the server's message lists the handlers the workflow has.
    await query("nope");
    await waitForText('[data-testid="query-result"]', /query refused: INVALID_ARGUMENT: .*total/);
    await query("total", "{not json");
    await waitForText('[data-testid="query-result"]', /the query's args must be JSON/);

    // Plain http beyond localhost (support/web-ui.ts): no crypto.randomUUID for the default update id (review 2).
    expect(await page.evaluate(() => typeof crypto.randomUUID)).toBe("undefined");
    await update("add", "5");
    await waitForText('[data-testid="update-result"]', /^update \S+ returned/);
    await waitForText('[data-testid="update-result"] pre', /"total": 15/);
    // Accepted updates are in history; the page follows it.
    await waitForText("table.history summary", /^update completed$/);
    await update("add", "-2");
    await waitForText('[data-testid="update-result"].error', /^update \S+ rejected: amount must be a positive number, got -2$/);
    await query("total");
    await waitForText('[data-testid="query-result"] pre', /^15$/);
    await screenshot("9-run-query-update");

    await page.select('form.run-reset select[name="reset-to"]', "first");
    await submit("form.run-reset", { "reset-reason": "retry from the UI" });
    await waitForText('[data-testid="reset-result"]', /reset refused: PERMISSION_DENIED/);
    expect(await page.$eval('[data-testid="run-status"]', (el) => el.textContent)).toBe("RUNNING");

    await ui.useKey("admin");
    await waitForText("dd", /^counting$/);
    await update("add", "1");
    await waitForText('[data-testid="update-result"] pre', /"total": 16/);
    await query("total");
    await waitForText('[data-testid="query-result"] pre', /^16$/);
    // Marks this document: still there after the reset proves the page followed it without a reload.
    await page.evaluate(() => (window.dexMark = 7));
    // To the start, chosen among the event points the page offers (the start and each workflow task's marker).
    await page.select('form.run-reset select[name="reset-to"]', "event");
    await page.select('form.run-reset select[name="reset-event"]', "1");
    await submit("form.run-reset", { "reset-reason": "retry from the UI" });
    await waitForText('[data-testid="reset-result"]', /^reset: new run \S+ \(1 events kept/);
    const newRunId = await page.$eval('[data-testid="reset-new-run"]', (el) => el.textContent!);
    expect(newRunId).not.toBe(handle.runId);
    await waitForText('[data-testid="run-status"]', /^TERMINATED$/);
    await waitForText('[data-testid="reset-to"]', new RegExp(`^${newRunId}$`));
    await waitForText("table.history summary", /^run terminated$/);
    expect(await page.evaluate(() => window.dexMark)).toBe(7);
    await screenshot("10-run-reset");

    await page.click('[data-testid="reset-new-run"]');
    await waitForText("h1", new RegExp(`^Run ${newRunId}$`));
    await waitForText('[data-testid="reset-from"]', new RegExp(`^${handle.runId} \\(retry from the UI\\)$`));
    await waitForText("dd", /^counting$/);
    await query("total");
    await waitForText('[data-testid="query-result"] pre', /^\d+$/);
    await screenshot("11-run-after-reset");
    expect((await client.getHandle({ runId: newRunId }).describe()).status).toBe("RUNNING");
  });
});

/**
 * The web UI's runs page in Debian's chromium (puppeteer-core, no browser
 * download): milliseconds from navigation start to the first run row in the
 * DOM, measured inside the page (a MutationObserver installed before any
 * script of the page runs, reading performance.now(), whose zero is the
 * navigation's start), so the figure holds no DevTools round trip.
 *   cold: a fresh browser context per load (empty HTTP cache, new connections);
 *   warm: reloads of one page (app.js and app.css cached, as a user's second visit).
 */
import puppeteer, { type Page } from "puppeteer-core";
import { percentile } from "../src/stats.js";

// The browser global the page functions read (they run in chromium); the check program has no DOM lib.
declare const window: { dexFirstRowMs?: number };

export interface PageLoadResult {
  cold: { p50: number; p99: number; samples: number[] };
  warm: { p50: number; p99: number; samples: number[] };
  rows: number;
}

/**
 * Records, in the page, when the first `tr[data-run-id]` appears. A string, not a function: tsx
 * compiles functions with a `__name` helper that does not exist in the page.
 */
const FIRST_ROW_PROBE = `
  const observer = new MutationObserver(() => {
    if (window.dexFirstRowMs !== undefined || !document.querySelector("tr[data-run-id]")) return;
    window.dexFirstRowMs = performance.now();
    observer.disconnect();
  });
  observer.observe(document, { childList: true, subtree: true });
`;

async function firstRowMs(page: Page, timeoutMs: number): Promise<number> {
  await page.waitForFunction(() => window.dexFirstRowMs !== undefined, { timeout: timeoutMs });
  return page.evaluate(() => window.dexFirstRowMs!);
}

export async function measurePageLoad(
  url: string,
  options: { executablePath: string; coldLoads: number; warmLoads: number; timeoutMs?: number },
): Promise<PageLoadResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const browser = await puppeteer.launch({
    executablePath: options.executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const cold: number[] = [];
    for (let i = 0; i < options.coldLoads; i++) {
      const context = await browser.createBrowserContext();
      const page = await context.newPage();
      await page.evaluateOnNewDocument(FIRST_ROW_PROBE);
      await page.goto(url);
      cold.push(await firstRowMs(page, timeoutMs));
      await context.close();
    }
    const page = await browser.newPage();
    await page.evaluateOnNewDocument(FIRST_ROW_PROBE);
    await page.goto(url);
    await firstRowMs(page, timeoutMs); // fills the cache
    const warm: number[] = [];
    for (let i = 0; i < options.warmLoads; i++) {
      await page.reload();
      warm.push(await firstRowMs(page, timeoutMs));
    }
    const rows = await page.$$eval("tr[data-run-id]", (trs) => trs.length);
    const summary = (ms: number[]) => ({ p50: Math.round(percentile(ms, 50)), p99: Math.round(percentile(ms, 99)), samples: ms.map(Math.round) });
    return { cold: summary(cold), warm: summary(warm), rows };
  } finally {
    await browser.close();
  }
}

/**
 * The browser tests' shared set-up (tests/e2e/web-ui*.test.ts): the UI built from this checkout,
 * `dex server` requiring API keys with its UI port, one key per role, in-process workers, and
 * Debian's chromium driven by puppeteer-core, with the helpers that wait for DOM states with a
 * deadline. Screenshots go to tests/e2e/artifacts/web-ui/ (gitignored).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { createClient, type Worker } from "@dex/sdk";
import { freePort } from "@dex/server";
import { createTestDatabase, DEFAULT_WAIT_MS, type TestDatabase } from "@dex/testing";
import { repoRoot, runDex, startServerProcess, type ServerProcess } from "./server-process.js";

// The few browser globals the page functions below use (they run in chromium, not here); the
// check program has no DOM lib.
declare const sessionStorage: { setItem(key: string, value: string): void };
declare const document: {
  querySelectorAll(selector: string): ArrayLike<{ textContent: string | null; value?: string }> & Iterable<{ textContent: string | null; value?: string }>;
};

export const CHROMIUM = process.env.DEX_CHROMIUM ?? "/usr/bin/chromium";
export const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`web UI browser tests skipped: no chromium at ${CHROMIUM} (apt-get install chromium, or set DEX_CHROMIUM)`);
export const ARTIFACTS = `${repoRoot}tests/e2e/artifacts/web-ui/`;

/** The UI's host name in the browser (see WebUi.uiUrl); .test is reserved, never a real name (RFC 2606). */
const UI_HOST = "dex-ui.test";

export type Role = "admin" | "client" | "worker";

export interface WebUi {
  readonly db: TestDatabase;
  readonly server: ServerProcess;
  /**
   * What the browser opens: http://dex-ui.test:<ui port>/, a name chromium resolves to 127.0.0.1
   * (--host-resolver-rules). Not 127.0.0.1 or localhost, which browsers treat as secure: the pages
   * run in a non-secure context, as on a host's address over plain http (`dex server` listens on
   * 0.0.0.0), where crypto.randomUUID is undefined (review 2: the UI's updates showed nothing there).
   */
  readonly uiUrl: string;
  /** http://127.0.0.1:<ui port>/: the same server for calls from the test process (fetch). */
  readonly localUrl: string;
  readonly keys: Readonly<Record<Role, string>>;
  readonly browser: Browser;
  readonly page: Page;
  /** Waits until some element matching `selector` has text matching `pattern`. */
  waitForText(selector: string, pattern: RegExp): Promise<void>;
  /** Waits until the rows matching `selector` are exactly these texts in `cell` (a selector inside each row), in any order. */
  waitForRows(selector: string, cell: string, expected: string[]): Promise<void>;
  screenshot(name: string): Promise<void>;
  /** Replaces what an input holds with `value`, typed, as a user would (the page's state follows). */
  fill(selector: string, value: string): Promise<void>;
  /**
   * A new tab holding `role`'s key for the UI's origin, on about:blank, in front (so the other tabs
   * are hidden: document.visibilityState). Closed with the browser.
   */
  newTab(role: Role): Promise<Page>;
  /** Enters an API key in the header form (the page reloads, as a user's would). */
  useKey(role: Role): Promise<void>;
  close(): Promise<void>;
}

export async function startWebUi(options: {
  /** Task queues to create, both types each ("default" is always created). */
  queues?: string[];
  /** The workers to run, given the server's address and a worker key. */
  workers(address: string, workerKey: string): Worker[];
}): Promise<WebUi> {
  // The server serves server/ui/dist: build it from this checkout's sources (under a second).
  const built = spawnSync(process.execPath, [`${repoRoot}server/ui/build.mjs`], { encoding: "utf8" });
  if (built.status !== 0) throw new Error(`building the web UI failed:\n${built.stdout}${built.stderr}`);
  const db = await createTestDatabase();
  const closers: Array<() => Promise<unknown> | void> = [() => db.drop()];
  const close = async () => {
    for (const closer of closers.splice(0).reverse()) await closer();
  };
  try {
    const server = await startServerProcess({ databaseUrl: db.url, port: await freePort(), requireApiKeys: true, env: { DEX_UI_PORT: String(await freePort()) } });
    closers.push(async () => {
      server.child.kill("SIGTERM");
      await server.exited;
    });
    const localUrl = /dex web UI at (\S+)/.exec(server.output())![1]!;
    const uiUrl = localUrl.replace(/^http:\/\/[^:/]+/, `http://${UI_HOST}`);
    const keys = { admin: "", client: "", worker: "" };
    for (const role of ["admin", "client", "worker"] as const) {
      const created = await runDex(["auth", "create", "--name", `ui-${role}`, "--role", role, "--json", "--database-url", db.url]);
      if (created.code !== 0) throw new Error(`dex auth create failed: ${created.stderr}`);
      keys[role] = (JSON.parse(created.stdout) as { key: string }).key;
    }
    const admin = createClient({ address: server.address, apiKey: keys.admin });
    for (const name of ["default", ...(options.queues ?? [])]) for (const type of [1, 2]) await admin.raw.queues.createTaskQueue({ name, type });
    admin.close();
    const workers = options.workers(server.address, keys.worker);
    closers.push(() => Promise.all(workers.map((w) => w.shutdown())));
    for (const worker of workers) worker.start();

    await mkdir(ARTIFACTS, { recursive: true });
    const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", `--host-resolver-rules=MAP ${UI_HOST} 127.0.0.1`] });
    closers.push(() => browser.close());
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    // The UI asks before cancel, terminate and reset; the tests say yes.
    page.on("dialog", (dialog) => void dialog.accept());
    page.on("pageerror", (err) => console.error("web UI page error:", err));

    const wait = { timeout: DEFAULT_WAIT_MS, polling: 100 };
    const fill = async (selector: string, value: string) => {
      // Emptied with an input event, so the page's state (a controlled input) is emptied too and a
      // re-render cannot put the old text back before the typing.
      await page.$eval(selector, (el) => {
        const input = el as unknown as { value: string; dispatchEvent(event: unknown): void };
        input.value = "";
        input.dispatchEvent(new (globalThis as unknown as { Event: new (type: string, init: object) => unknown }).Event("input", { bubbles: true }));
      });
      if (value !== "") await page.type(selector, value);
    };
    return {
      db,
      server,
      uiUrl,
      localUrl,
      keys,
      browser,
      page,
      close,
      async waitForText(selector, pattern) {
        await page
          .waitForFunction(
            (sel: string, source: string, flags: string) => [...document.querySelectorAll(sel)].some((el) => new RegExp(source, flags).test(el.textContent ?? "")),
            wait,
            selector,
            pattern.source,
            pattern.flags,
          )
          .catch(async (err: unknown) => {
            throw new Error(`no ${selector} showed ${pattern}; they show ${JSON.stringify(await textsOf(page, selector))}`, { cause: err });
          });
      },
      async waitForRows(selector, cell, expected) {
        await page
          .waitForFunction(
            (sel: string, cellSel: string, want: string[]) => {
              const rows = [...document.querySelectorAll(`${sel} ${cellSel}`)].map((el) => el.textContent ?? "");
              return rows.length === want.length && want.every((text) => rows.includes(text));
            },
            wait,
            selector,
            cell,
            expected,
          )
          .catch(async (err: unknown) => {
            throw new Error(`rows ${selector} were not ${JSON.stringify(expected)}; they are ${JSON.stringify(await textsOf(page, `${selector} ${cell}`))}`, { cause: err });
          });
      },
      fill,
      async newTab(role) {
        const tab = await browser.newPage();
        tab.on("dialog", (dialog) => void dialog.accept());
        tab.on("pageerror", (err) => console.error("web UI page error:", err));
        // sessionStorage is per tab and origin; any document of the origin can set it (not the app: it would start reading).
        await tab.goto(`${uiUrl}app.css`);
        await tab.evaluate((key: string) => sessionStorage.setItem("dex.apiKey", key), keys[role]);
        await tab.goto("about:blank");
        return tab;
      },
      async screenshot(name) {
        await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });
      },
      async useKey(role) {
        await fill('input[name="api-key"]', keys[role]);
        await Promise.all([page.waitForNavigation(), page.click('form.key button[type="submit"]')]);
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** What the elements matching `selector` show now: for a failure's message. */
function textsOf(page: Page, selector: string): Promise<string[]> {
  return page.$$eval(selector, (els) => els.map((el) => el.textContent ?? "")).catch(() => []);
}

/** A time as the UI prints it (UTC, milliseconds): what a user would copy into a time filter. */
export function uiTime(date: Date): string {
  return date.toISOString().replace("T", " ").replace("Z", "");
}

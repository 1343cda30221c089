/**
 * One wake-up mechanism (store/notify.ts): every cross-server wake-up is sent
 * after the commit that made it true, by engine/notifier.ts, with payloads
 * built in store/notify.ts. A NOTIFY anywhere else in server/src (pg_notify
 * in a statement, postgres.js's sql.notify, a NOTIFY command, or the store's
 * sendWakeups called from a writing path) would bring back Postgres's global
 * notify lock at commit on that path, so this test reads the sources and
 * fails on any.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = join(import.meta.dirname, "..", "src");

/** Where sending is the point: the payloads and the one statement, and the after-commit sender. */
const SENDERS = new Set(["store/notify.ts", "engine/notifier.ts"]);

/**
 * Files allowed to NOTIFY inside a writing statement, each with how many uses: none. A file added
 * here must say why its wake-up cannot wait for the commit (engine/notifier.ts says what NOTIFY at
 * commit costs); a file that stopped notifying fails the test until its entry goes.
 */
const KNOWN_EXCEPTIONS: Record<string, { uses: number; until: string }> = {};

/**
 * pg_notify(...) in SQL, a NOTIFY command (`notify dex_wakeup`), any `notify(` call (sql.notify,
 * a helper of that name), and the store's sender.
 */
const SENDING = [/\bpg_notify\s*\(/gi, /\bnotify\s+"?dex_wakeup/gi, /\bnotify\s*\(/g, /\bsendWakeups\s*\(/g];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return /\.(ts|sql)$/.test(entry.name) ? [path] : [];
  });
}

/** The sending uses in one file's text, as "line: text". */
function sendingUses(text: string): string[] {
  return text.split("\n").flatMap((line, i) => (SENDING.some((re) => (re.lastIndex = 0, re.test(line))) ? [`${i + 1}: ${line.trim()}`] : []));
}

describe("one wake-up mechanism", () => {
  it("the patterns find every way of sending a NOTIFY, and not notifyAfterCommit or announceQueues", () => {
    expect(sendingUses("select pg_notify('dex_wakeup', x)")).toHaveLength(1);
    expect(sendingUses("(select PG_NOTIFY ('dex_wakeup', ${p}) from created)")).toHaveLength(1);
    expect(sendingUses("await tx.unsafe(`NOTIFY dex_wakeup, 'x'`)")).toHaveLength(1);
    expect(sendingUses("await sql.notify(WAKEUP_CHANNEL, payload)")).toHaveLength(1);
    expect(sendingUses("await notify(tx, payloads)")).toHaveLength(1);
    expect(sendingUses("await sendWakeups(engine.sql, p)")).toHaveLength(1);
    expect(sendingUses("notifyAfterCommit(engine, p); announceQueues(engine, type, [q]);")).toEqual([]);
  });

  it("server/src sends NOTIFY only from store/notify.ts and engine/notifier.ts", () => {
    const found: Record<string, string[]> = {};
    for (const path of sourceFiles(SRC)) {
      const file = relative(SRC, path).split("\\").join("/");
      if (SENDERS.has(file)) continue;
      const uses = sendingUses(readFileSync(path, "utf8"));
      if (uses.length > 0 || KNOWN_EXCEPTIONS[file]) found[file] = uses;
    }
    const unexpected = Object.entries(found).filter(([file, uses]) => uses.length !== (KNOWN_EXCEPTIONS[file]?.uses ?? 0));
    expect(
      Object.fromEntries(unexpected),
      "announce after the commit instead (Effects / inTransaction, or notifyAfterCommit / announceQueues from " +
        "engine/notifier.ts after the statement returned); a known exception whose file no longer notifies must leave " +
        "KNOWN_EXCEPTIONS",
    ).toEqual({});
  });

  it("the senders are the ones this test expects", () => {
    expect(sendingUses(readFileSync(join(SRC, "store/notify.ts"), "utf8")).length).toBeGreaterThan(0);
    expect(sendingUses(readFileSync(join(SRC, "engine/notifier.ts"), "utf8")).length).toBeGreaterThan(0);
  });
});

/**
 * `dex --help` lists each command by a name and description kept in cli/src/main.ts, so that it can
 * run without loading any command's module (start-up time, issue 11). This holds those descriptions
 * to the ones the commands register themselves.
 */
import { describe, expect, it } from "vitest";
import { runDex } from "../support/server-process.js";

const collapse = (text: string) => text.replace(/\s+/g, " ").trim();

/** The description paragraph of `dex <command> --help`: between the Usage line and the next blank line. */
function ownDescription(help: string): string {
  const [, paragraph] = help.split(/\n\s*\n/);
  return collapse(paragraph ?? "");
}

describe("dex --help", () => {
  it("lists every command with the description the command itself shows", async () => {
    const root = await runDex(["--help"]);
    expect(root.code).toBe(0);
    const listing = collapse(root.stdout.slice(root.stdout.indexOf("Commands:")));
    const names = ["dev", "server", "migrate", "auth", "workflow", "queue", "health"];
    for (const name of names) {
      const own = await runDex([name, "--help"]);
      expect(own.code, `dex ${name} --help`).toBe(0);
      const description = ownDescription(own.stdout);
      expect(description.length, `dex ${name} has a description`).toBeGreaterThan(10);
      expect(listing, `dex --help lists ${name} as it describes itself`).toContain(`${name} ${description}`);
    }
  });
});

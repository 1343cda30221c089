/** The SDK README's "Testing workflows" example is readme-example.test.ts, verbatim, so the example shown is the one CI runs. */
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";

describe("sdk-ts/README.md, Testing workflows", () => {
  it("shows readme-example.test.ts verbatim", async () => {
    const readme = await readFile(new URL("../../sdk-ts/README.md", import.meta.url), "utf8");
    const example = await readFile(new URL("./readme-example.test.ts", import.meta.url), "utf8");
    expect(readme).toContain("```ts\n" + example + "```");
  });
});

/**
 * Replays the versioning example's recorded histories (examples/versioning/
 * histories, recorded from real runs by tests/e2e/patching.test.ts with
 * DEX_RECORD_HISTORIES=1) against each version of the workflow: every version
 * replays the histories it must carry on, so a change to any of them that would
 * break running workflows fails here, before it is deployed. The ones it must
 * not replay show why each step waits for the previous version's runs to end.
 */
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { NonDeterminismError, replayHistory } from "@dex/sdk";
import { versions, type VersionName } from "../versioning/versions.js";

const dir = fileURLToPath(new URL("../versioning/histories/", import.meta.url));
const files = (await readdir(dir)).filter((file) => file.endsWith(".json")).sort();

/** Which versions replay each history (file name: the version that started the run, how it ended). */
const replayedBy: Record<string, VersionName[]> = {
  // Started by v1, asleep when v2 was deployed, finished by v2 on the old path.
  "v1-old-path.json": ["v1", "v2"],
  "v2-patched.json": ["v2", "v3", "v4"],
  "v2-patched-finished-on-v3.json": ["v2", "v3", "v4"],
  "v3-deprecated.json": ["v2", "v3", "v4"],
  "v3-deprecated-finished-on-v4.json": ["v2", "v3", "v4"],
  // No marker: version 2 would take the old path on it (so once v4 runs, no rollback to v2).
  "v4-removed.json": ["v3", "v4"],
};

const cases = files.flatMap((file) => (Object.keys(versions) as VersionName[]).map((version) => [file, version] as const));

describe("recorded histories of the versioning example", () => {
  it("exist for every version", () => {
    expect(files).toEqual(Object.keys(replayedBy).sort());
  });

  it.each(cases)("%s on %s", async (file, version) => {
    const history = await readFile(`${dir}${file}`, "utf8");
    const replay = replayHistory(versions[version], history);
    if (replayedBy[file]!.includes(version)) await expect(replay).resolves.toBeUndefined();
    else await expect(replay).rejects.toBeInstanceOf(NonDeterminismError);
  });

  it("records the marker as each version wrote it", async () => {
    const markers = async (file: string) => {
      const { events } = JSON.parse(await readFile(`${dir}${file}`, "utf8")) as { events: Array<Record<string, unknown>> };
      return events.flatMap((event) => (event.patchMarkerRecorded ? [event.patchMarkerRecorded] : []));
    };
    expect(await markers("v1-old-path.json")).toEqual([]);
    expect(await markers("v2-patched.json")).toEqual([{ patchId: "fraud-check" }]);
    expect(await markers("v3-deprecated.json")).toEqual([{ patchId: "fraud-check", deprecated: true }]);
    expect(await markers("v4-removed.json")).toEqual([]);
  });
});

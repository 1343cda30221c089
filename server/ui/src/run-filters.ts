/**
 * The runs page's filters, kept in the URL hash (#/runs?queue=orders&labels=team%3Dpay) so a
 * filtered view can be shared and survives a reload, and turned into a ListRuns request. Times are
 * UTC, as the tables show them; the text a user typed stays in the hash as typed.
 */
import { timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { RunStatus } from "../../../proto/src/gen/dex/v1/common_pb.js";

export interface RunFilters {
  instance: string;
  workflow: string;
  /** A RunStatus name ("RUNNING"), or "" for any. */
  status: string;
  queue: string;
  /** "key=value" pairs separated by commas, or a JSON object (for values with commas or edge spaces). */
  labels: string;
  /** Created at or after / before, e.g. "2026-12-07 10:00:00.123" (UTC unless a zone is written). */
  after: string;
  before: string;
}

/** The statuses a run can be filtered by, in the order the status menu lists them. */
export const STATUSES: readonly RunStatus[] = [
  RunStatus.CREATED,
  RunStatus.RUNNING,
  RunStatus.COMPLETED,
  RunStatus.FAILED,
  RunStatus.CANCELLED,
  RunStatus.TERMINATED,
  RunStatus.TIMED_OUT,
  RunStatus.CONTINUED_AS_NEW,
];

const NAMES: ReadonlyArray<keyof RunFilters> = ["instance", "workflow", "status", "queue", "labels", "after", "before"];

export function filtersFromQuery(query: string): RunFilters {
  const params = new URLSearchParams(query);
  return Object.fromEntries(NAMES.map((name) => [name, params.get(name) ?? ""])) as unknown as RunFilters;
}

/** The hash that shows these filters: "#/runs" with only the filters that are set. */
export function filtersHash(filters: RunFilters): string {
  const params = new URLSearchParams();
  for (const name of NAMES) if (filters[name].trim() !== "") params.set(name, filters[name]);
  const query = params.toString();
  return query ? `#/runs?${query}` : "#/runs";
}

export interface ListRunsFilter {
  instanceId: string;
  workflowName: string;
  statuses: RunStatus[];
  taskQueue: string;
  labels: Record<string, string>;
  createdAfter?: Timestamp;
  createdBefore?: Timestamp;
}

/** The ListRuns filter fields, or what to fix in the filters when one cannot be read. */
export function listRunsFilter(filters: RunFilters): { filter: ListRunsFilter } | { problem: string } {
  const status = filters.status.trim();
  // Matched against the list, not looked up in the RunStatus object: a pasted link's "UNSPECIFIED"
  // or "constructor" is a key there too, and would have been sent.
  const statusValue = STATUSES.find((s) => RunStatus[s] === status);
  if (status !== "" && statusValue === undefined) return { problem: `status: "${status}" is not a run status; choose one of ${STATUSES.map((s) => RunStatus[s]).join(", ")}` };
  const labels = parseLabels(filters.labels);
  if (typeof labels === "string") return { problem: labels };
  const createdAfter = parseTime("created after", filters.after);
  if (typeof createdAfter === "string") return { problem: createdAfter };
  const createdBefore = parseTime("created before", filters.before);
  if (typeof createdBefore === "string") return { problem: createdBefore };
  return {
    filter: {
      instanceId: filters.instance.trim(),
      workflowName: filters.workflow.trim(),
      statuses: statusValue === undefined ? [] : [statusValue],
      taskQueue: filters.queue.trim(),
      labels,
      createdAfter,
      createdBefore,
    },
  };
}

export const LABELS_HELP = 'labels: key=value, key2=value2; or JSON, {"key": "a, b"}, for values with commas or edge spaces';

/**
 * "team=pay, tier=gold" -> { team: "pay", tier: "gold" }: keys and values trimmed, a value may hold
 * "=". A value with a comma or edge spaces cannot be written that way: a JSON object of strings
 * (text starting with "{") says it exactly. A string is what to fix.
 */
export function parseLabels(text: string): Record<string, string> | string {
  if (text.trim().startsWith("{")) return parseJsonLabels(text);
  const labels: Record<string, string> = {};
  for (const pair of text.split(",")) {
    if (pair.trim() === "") continue;
    const at = pair.indexOf("=");
    const key = at < 0 ? "" : pair.slice(0, at).trim();
    if (key === "") return `labels: write key=value pairs separated by commas ("${pair.trim()}" has no key=), or a JSON object`;
    labels[key] = pair.slice(at + 1).trim();
  }
  return labels;
}

function parseJsonLabels(text: string): Record<string, string> | string {
  const fix = 'labels: a JSON object of string values, e.g. {"team": "pay, ops"}';
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return `${fix}: ${(err as Error).message}`;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return fix;
  const entries = Object.entries(value);
  const bad = entries.find(([key, v]) => key === "" || typeof v !== "string");
  if (bad) return `${fix} (${JSON.stringify(bad[0])} ${bad[0] === "" ? "is an empty key" : "is not a string"})`;
  return Object.fromEntries(entries) as Record<string, string>;
}

/** A time as the tables print it ("2026-12-07 10:00:00.123", UTC), or ISO 8601 with a zone; "" is none. */
export function parseTime(what: string, text: string): Timestamp | undefined | string {
  let t = text.trim();
  if (t === "") return undefined;
  if (/^\d{4}-\d\d-\d\d$/.test(t)) t += "T00:00";
  t = t.replace(" ", "T");
  if (!/(Z|[+-]\d\d:?\d\d)$/i.test(t)) t += "Z";
  const ms = Date.parse(t);
  if (Number.isNaN(ms)) return `${what}: "${text.trim()}" is not a time; write e.g. 2026-12-07 10:00:00 (UTC, as the tables show times)`;
  return timestampFromMs(ms);
}

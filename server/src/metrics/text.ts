/**
 * The Prometheus text exposition format (version 0.0.4), which every
 * Prometheus-compatible scraper reads: per family a `# HELP` and `# TYPE`
 * line, then one line per sample, `name{label="value",...} value`.
 * Written by hand: the format is small, and a client library would bring a
 * global registry the engine does not need.
 */

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type MetricType = "counter" | "gauge" | "histogram";
export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  /** The full sample name: the family name, or it plus `_bucket`, `_sum`, `_count` for histograms. */
  readonly name: string;
  readonly labels: Labels;
  readonly value: number;
}

export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly samples: readonly Sample[];
}

/** HELP text: backslash and line feed are the only characters escaped. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Label values: backslash, double quote and line feed are escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Go's ParseFloat reads what Number#toString writes, except the infinities and NaN. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

function formatLabels(labels: Labels): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

/** Renders families in order; a family with no samples still gets its HELP and TYPE lines. */
export function renderFamilies(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  for (const family of families) {
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`);
    lines.push(`# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples) {
      lines.push(`${sample.name}${formatLabels(sample.labels)} ${formatValue(sample.value)}`);
    }
  }
  // The format requires the last line to end with a line feed.
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}

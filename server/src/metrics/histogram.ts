/**
 * A labelled histogram: per label set, a count per bucket, the sum and the
 * count of observations. Buckets are stored per bucket (one increment per
 * observation) and made cumulative when rendered, as the format wants
 * (`le` is "less than or equal", and `+Inf` equals `_count`).
 */
import { byLabels, labelKey, pick } from "./registry.js";
import type { Labels, MetricFamily, Sample } from "./text.js";

/** Seconds, for waits and executions from a few milliseconds to an hour. */
export const DURATION_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
];

interface Series {
  labels: Labels;
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; the last entry is (last bound, +Inf). */
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram<L extends string> {
  private readonly series = new Map<string, Series>();
  private readonly bounds: readonly number[];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
    buckets: readonly number[] = DURATION_BUCKETS,
  ) {
    const sorted = [...buckets].sort((a, b) => a - b);
    if (sorted.some((b, i) => !Number.isFinite(b) || (i > 0 && b === sorted[i - 1]))) {
      throw new Error(`histogram ${name}: buckets must be finite and distinct`);
    }
    this.bounds = sorted;
  }

  observe(labels: Record<L, string>, value: number): void {
    // A clock step backwards must not produce a negative duration (nor NaN).
    const v = Number.isFinite(value) && value > 0 ? value : 0;
    const key = labelKey(this.labelNames, labels);
    let series = this.series.get(key);
    if (!series) {
      series = { labels: pick(this.labelNames, labels), counts: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.series.set(key, series);
    }
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]!) i++;
    series.counts[i]!++;
    series.sum += v;
    series.count++;
  }

  collect(): MetricFamily {
    const samples: Sample[] = [];
    for (const series of [...this.series.values()].sort(byLabels)) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += series.counts[i]!;
        const le = i < this.bounds.length ? String(this.bounds[i]) : "+Inf";
        samples.push({ name: `${this.name}_bucket`, labels: { ...series.labels, le }, value: cumulative });
      }
      samples.push({ name: `${this.name}_sum`, labels: series.labels, value: series.sum });
      samples.push({ name: `${this.name}_count`, labels: series.labels, value: series.count });
    }
    return { name: this.name, help: this.help, type: "histogram", samples };
  }
}

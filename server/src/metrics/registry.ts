/**
 * Counters and the registry that renders a server's metrics. Everything is
 * in-process and per server (Prometheus sums across servers), except the
 * families a collector reads at scrape time (the per-queue gauges, read from
 * the database so that every server reports the cluster-wide truth).
 */
import { renderFamilies, type Labels, type MetricFamily } from "./text.js";

/** The key of one label set: values in label-name order (queue names cannot contain NUL). */
export function labelKey<L extends string>(names: readonly L[], labels: Record<L, string>): string {
  return names.map((name) => labels[name]).join("\u0000");
}

export function pick<L extends string>(names: readonly L[], labels: Record<L, string>): Labels {
  const out: Record<string, string> = {};
  for (const name of names) out[name] = labels[name];
  return out;
}

/** Stable output order: scrapes diff cleanly and tests can read them. */
export function byLabels(a: { labels: Labels }, b: { labels: Labels }): number {
  const ka = Object.values(a.labels).join("\u0000");
  const kb = Object.values(b.labels).join("\u0000");
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

export class Counter<L extends string> {
  private readonly series = new Map<string, { labels: Labels; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
  ) {
    if (!name.endsWith("_total")) throw new Error(`counter ${name}: counter names end in _total`);
  }

  inc(labels: Record<L, string>, by = 1): void {
    const key = labelKey(this.labelNames, labels);
    const series = this.series.get(key);
    if (series) series.value += by;
    else this.series.set(key, { labels: pick(this.labelNames, labels), value: by });
  }

  collect(): MetricFamily {
    const samples = [...this.series.values()].sort(byLabels).map((s) => ({ name: this.name, labels: s.labels, value: s.value }));
    return { name: this.name, help: this.help, type: "counter", samples };
  }
}

export interface Collectable {
  collect(): MetricFamily | readonly MetricFamily[] | Promise<MetricFamily | readonly MetricFamily[]>;
}

/** Renders what its collectables hold, in registration order. */
export class Registry {
  private readonly collectables: Collectable[] = [];

  register<T extends Collectable>(collectable: T): T {
    this.collectables.push(collectable);
    return collectable;
  }

  async render(): Promise<string> {
    const families: MetricFamily[] = [];
    for (const collectable of this.collectables) {
      const collected = await collectable.collect();
      if (Array.isArray(collected)) families.push(...(collected as readonly MetricFamily[]));
      else families.push(collected as MetricFamily);
    }
    return renderFamilies(families);
  }
}

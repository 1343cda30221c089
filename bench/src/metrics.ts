/** Reads one histogram series from a dex server's Prometheus /metrics text. */

export interface Buckets {
  /** Upper bounds (seconds) and cumulative counts, +Inf last. */
  bounds: number[];
  cumulative: number[];
}

export async function scrapeHistogram(url: string, name: string, labels: Record<string, string>): Promise<Buckets> {
  const text = await (await fetch(url)).text();
  const rows: Array<[number, number]> = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}_bucket{`)) continue;
    const labelText = line.slice(line.indexOf("{") + 1, line.lastIndexOf("}"));
    const parsed = Object.fromEntries([...labelText.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!Object.entries(labels).every(([k, v]) => parsed[k] === v)) continue;
    const le = parsed.le === "+Inf" ? Infinity : Number(parsed.le);
    rows.push([le, Number(line.slice(line.lastIndexOf("}") + 1).trim())]);
  }
  rows.sort((a, b) => a[0] - b[0]);
  return { bounds: rows.map((r) => r[0]), cumulative: rows.map((r) => r[1]) };
}

/** The q-quantile (0..1) by linear interpolation inside the bucket, as Prometheus's histogram_quantile does; NaN when empty. */
export function histogramQuantile(b: Buckets, q: number): number {
  const total = b.cumulative.at(-1) ?? 0;
  if (total === 0) return Number.NaN;
  const rank = q * total;
  for (let i = 0; i < b.bounds.length; i++) {
    if (b.cumulative[i]! >= rank) {
      if (b.bounds[i] === Infinity) return b.bounds[i - 1] ?? Number.NaN;
      const lower = i === 0 ? 0 : b.bounds[i - 1]!;
      const below = i === 0 ? 0 : b.cumulative[i - 1]!;
      const inBucket = b.cumulative[i]! - below;
      return lower + (b.bounds[i]! - lower) * (inBucket === 0 ? 1 : (rank - below) / inBucket);
    }
  }
  return Number.NaN;
}

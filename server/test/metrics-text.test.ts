import { describe, expect, it } from "vitest";
import { Histogram } from "../src/metrics/histogram.js";
import { Counter, Registry } from "../src/metrics/registry.js";
import { renderFamilies } from "../src/metrics/text.js";

describe("Prometheus text rendering", () => {
  it("escapes HELP text and label values, and writes the infinities as the format spells them", () => {
    const text = renderFamilies([
      {
        name: "x",
        help: 'a\\b\nc "quoted"',
        type: "gauge",
        samples: [
          { name: "x", labels: { v: 'q"\\\n' }, value: Number.POSITIVE_INFINITY },
          { name: "x", labels: {}, value: Number.NaN },
        ],
      },
    ]);
    expect(text).toBe('# HELP x a\\\\b\\nc "quoted"\n# TYPE x gauge\nx{v="q\\"\\\\\\n"} +Inf\nx NaN\n');
  });

  it("renders histogram buckets cumulatively, +Inf equal to _count, per label set in a stable order", async () => {
    const histogram = new Histogram("h_seconds", "help", ["queue"], [0.1, 1]);
    for (const v of [0.05, 0.1, 0.5, 3, -1]) histogram.observe({ queue: "b" }, v);
    histogram.observe({ queue: "a" }, 2);
    const counter = new Counter("c_total", "help", ["queue"]);
    counter.inc({ queue: "a" });
    counter.inc({ queue: "a" }, 2);
    const registry = new Registry();
    registry.register(histogram);
    registry.register(counter);
    const lines = (await registry.render()).trimEnd().split("\n");
    expect(lines).toEqual([
      "# HELP h_seconds help",
      "# TYPE h_seconds histogram",
      'h_seconds_bucket{queue="a",le="0.1"} 0',
      'h_seconds_bucket{queue="a",le="1"} 0',
      'h_seconds_bucket{queue="a",le="+Inf"} 1',
      'h_seconds_sum{queue="a"} 2',
      'h_seconds_count{queue="a"} 1',
      // -1 (a clock step backwards) counts as 0; 0.1 falls in le="0.1" (less than or equal).
      'h_seconds_bucket{queue="b",le="0.1"} 3',
      'h_seconds_bucket{queue="b",le="1"} 4',
      'h_seconds_bucket{queue="b",le="+Inf"} 5',
      'h_seconds_sum{queue="b"} 3.65',
      'h_seconds_count{queue="b"} 5',
      "# HELP c_total help",
      "# TYPE c_total counter",
      'c_total{queue="a"} 3',
    ]);
  });
});

/**
 * The history on a time axis: each event a tick at its time, each activity a bar from its
 * scheduling to its completion or failure (still open: to the last event).
 */
import type { HistoryEvent } from "../../../proto/src/gen/dex/v1/history_pb.js";
import { eventKind, millis, time } from "./format.js";

interface Bar {
  label: string;
  start: number;
  end: number;
  outcome: "completed" | "failed" | "open";
}

function activityBars(events: HistoryEvent[], last: number): Bar[] {
  const bars = new Map<number, Bar>();
  for (const event of events) {
    const at = millis(event.time) ?? last;
    const a = event.attributes;
    if (a.case === "activityScheduled") bars.set(a.value.seq, { label: a.value.activityName, start: at, end: last, outcome: "open" });
    else if (a.case === "activityCompleted" || a.case === "activityFailed") {
      const bar = bars.get(a.value.seq);
      if (bar) {
        bar.end = at;
        bar.outcome = a.case === "activityCompleted" ? "completed" : "failed";
        bar.label += ` (attempt ${a.value.attempt})`;
      }
    }
  }
  return [...bars.values()];
}

export function Timeline({ events }: { events: HistoryEvent[] }) {
  if (events.length === 0) return <p>No events yet.</p>;
  const first = millis(events[0]!.time) ?? 0;
  const last = Math.max(first + 1, millis(events[events.length - 1]!.time) ?? first);
  const span = last - first;
  const left = (t: number) => `${((t - first) / span) * 100}%`;
  return (
    <div class="timeline" data-testid="timeline">
      <div class="axis">
        <span>{time(events[0]!.time)}</span>
        <span>{`+${span} ms`}</span>
      </div>
      <div class="ticks">
        {events.map((event) => (
          <span class={`tick k-${event.attributes.case}`} style={{ left: left(millis(event.time) ?? first) }} title={`#${event.sequence} ${eventKind(event.attributes.case)} at ${time(event.time)}`} />
        ))}
      </div>
      {activityBars(events, last).map((bar) => (
        <div class="lane">
          <span class={`bar ${bar.outcome}`} style={{ left: left(bar.start), width: `max(2px, ${((bar.end - bar.start) / span) * 100}%)` }} title={bar.label} />
          <span class="bar-label">{bar.label}</span>
        </div>
      ))}
    </div>
  );
}

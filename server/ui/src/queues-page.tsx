/**
 * Task queues: depth, in flight, capacity, paused, oldest task, last poll; pause, resume and
 * capacity changes. Changes are admin only: a client key is refused by the server and its message shown.
 */
import { useState } from "preact/hooks";
import { TaskQueueType } from "../../../proto/src/gen/dex/v1/common_pb.js";
import { TaskQueueStatus, type TaskQueue } from "../../../proto/src/gen/dex/v1/task_queue_service_pb.js";
import { errorText, queues } from "./api.js";
import { millis, time } from "./format.js";
import { usePoll } from "./use-poll.js";

type Report = (message: { ok: boolean; text: string }) => void;

const queueLabel = (q: TaskQueue) => `${TaskQueueType[q.type]?.toLowerCase()} queue ${q.name}`;

/** "12:00:01.5 (3 s ago)"; the server records polls in batches, so a few seconds' lag is normal. */
function lastPoll(q: TaskQueue): string {
  const at = millis(q.lastPollTime);
  if (at === undefined) return "never";
  return `${time(q.lastPollTime)} (${Math.max(0, Math.round((Date.now() - at) / 1000))} s ago)`;
}

function QueueRow({ queue: q, report, reload }: { queue: TaskQueue; report: Report; reload: () => void }) {
  const [capacity, setCapacity] = useState("");
  const paused = q.status === TaskQueueStatus.PAUSED;
  /** Runs a change and reports it; whether the server took it. */
  const act = async (what: string, call: () => Promise<unknown>, done: string): Promise<boolean> => {
    try {
      await call();
      report({ ok: true, text: done });
      reload();
      return true;
    } catch (err) {
      report({ ok: false, text: `${what} refused: ${errorText(err)}` });
      return false;
    }
  };
  const setCapacityTo = (e: Event) => {
    e.preventDefault();
    const value = Number(capacity.trim());
    if (capacity.trim() === "" || !Number.isInteger(value) || value < 0) {
      report({ ok: false, text: "capacity: write a whole number of tasks, 0 for unlimited" });
      return;
    }
    // The input is emptied only once the server took the value: refused (a client key), it stays to fix or retry.
    const call = () => queues.updateTaskQueue({ name: q.name, type: q.type, capacity: value, updateMask: { paths: ["capacity"] } });
    void act("capacity change", call, `capacity of the ${queueLabel(q)}: ${value === 0 ? "unlimited" : value}`).then((taken) => taken && setCapacity(""));
  };
  return (
    <tr data-queue={`${TaskQueueType[q.type]}/${q.name}`}>
      <td>{q.name}</td>
      <td>{TaskQueueType[q.type]?.toLowerCase()}</td>
      <td>{TaskQueueStatus[q.status]?.toLowerCase()}</td>
      <td>{q.depth.toString()}</td>
      <td>{q.inFlight.toString()}</td>
      <td data-testid="capacity">{q.capacity === 0 ? "unlimited" : q.capacity}</td>
      <td>{q.oldestPendingAge ? `${q.oldestPendingAge.seconds.toString()} s` : ""}</td>
      <td data-testid="last-poll">{lastPoll(q)}</td>
      <td>
        <button class="pause" onClick={() => void act(paused ? "resume" : "pause", () => (paused ? queues.resumeTaskQueue({ name: q.name, type: q.type }) : queues.pauseTaskQueue({ name: q.name, type: q.type })), `${queueLabel(q)}: ${paused ? "resumed" : "paused"}`)}>
          {paused ? "Resume" : "Pause"}
        </button>
        <form class="capacity" onSubmit={setCapacityTo}>
          <input name="capacity" inputMode="numeric" size={6} placeholder="capacity" title="maximum tasks leased at once; 0: unlimited" value={capacity} onInput={(e) => setCapacity(e.currentTarget.value)} />
          <button type="submit">Set</button>
        </form>
      </td>
    </tr>
  );
}

export function QueuesPage() {
  const { data, error, reload } = usePoll((signal) => queues.listTaskQueues({}, { signal }), []);
  const [message, setMessage] = useState<{ ok: boolean; text: string }>();
  return (
    <section>
      <h1>Task queues</h1>
      {error && <p class="error" role="alert">{error}</p>}
      {message && <p class={message.ok ? "ok" : "error"} role="status" data-testid="action-result">{message.text}</p>}
      <table class="queues">
        <thead><tr><th>name</th><th>type</th><th>status</th><th>depth</th><th>in flight</th><th>capacity</th><th>oldest task</th><th>last poll</th><th></th></tr></thead>
        <tbody>
          {data?.queues.map((q) => (
            <QueueRow key={`${q.type}/${q.name}`} queue={q} report={setMessage} reload={reload} />
          ))}
        </tbody>
      </table>
    </section>
  );
}

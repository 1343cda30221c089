/** Task queues: depth, in flight, capacity, paused, oldest task; pause and resume. */
import { useState } from "preact/hooks";
import { TaskQueueType } from "../../../proto/src/gen/dex/v1/common_pb.js";
import { TaskQueueStatus, type TaskQueue } from "../../../proto/src/gen/dex/v1/task_queue_service_pb.js";
import { errorText, queues } from "./api.js";
import { usePoll } from "./use-poll.js";

export function QueuesPage() {
  const { data, error, reload } = usePoll(() => queues.listTaskQueues({}), []);
  const [message, setMessage] = useState<string>();
  const toggle = async (queue: TaskQueue) => {
    const paused = queue.status === TaskQueueStatus.PAUSED;
    try {
      if (paused) await queues.resumeTaskQueue({ name: queue.name, type: queue.type });
      else await queues.pauseTaskQueue({ name: queue.name, type: queue.type });
      setMessage(undefined);
      reload();
    } catch (err) {
      setMessage(`${paused ? "resume" : "pause"} refused: ${errorText(err)}`);
    }
  };
  return (
    <section>
      <h1>Task queues</h1>
      {error && <p class="error" role="alert">{error}</p>}
      {message && <p class="error" role="status" data-testid="action-result">{message}</p>}
      <table class="queues">
        <thead><tr><th>name</th><th>type</th><th>status</th><th>depth</th><th>in flight</th><th>capacity</th><th>oldest task</th><th></th></tr></thead>
        <tbody>
          {data?.queues.map((q) => (
            <tr data-queue={`${TaskQueueType[q.type]}/${q.name}`}>
              <td>{q.name}</td>
              <td>{TaskQueueType[q.type]?.toLowerCase()}</td>
              <td>{TaskQueueStatus[q.status]?.toLowerCase()}</td>
              <td>{q.depth.toString()}</td>
              <td>{q.inFlight.toString()}</td>
              <td>{q.capacity === 0 ? "unlimited" : q.capacity}</td>
              <td>{q.oldestPendingAge ? `${q.oldestPendingAge.seconds.toString()} s` : ""}</td>
              <td><button onClick={() => void toggle(q)}>{q.status === TaskQueueStatus.PAUSED ? "Resume" : "Pause"}</button></td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

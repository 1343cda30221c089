/** Schedules: what each starts, when next, how often it has; pause, resume, trigger now. */
import { useState } from "preact/hooks";
import { errorText, schedules } from "./api.js";
import { time } from "./format.js";
import { usePoll } from "./use-poll.js";
import { randomUuid } from "./uuid.js";

const PAGE_SIZE = 100;

export function SchedulesPage() {
  const [tokens, setTokens] = useState<string[]>([""]);
  const { data, error, reload } = usePoll((signal) => schedules.listSchedules({ pageSize: PAGE_SIZE, pageToken: tokens[tokens.length - 1]! }, { signal }), [tokens]);
  const [message, setMessage] = useState<{ ok: boolean; text: string }>();
  const act = async (what: string, call: () => Promise<unknown>) => {
    try {
      await call();
      setMessage({ ok: true, text: `${what}: done` });
      reload();
    } catch (err) {
      setMessage({ ok: false, text: `${what} refused: ${errorText(err)}` });
    }
  };
  return (
    <section>
      <h1>Schedules</h1>
      {error && <p class="error" role="alert">{error}</p>}
      {message && <p class={message.ok ? "ok" : "error"} role="status" data-testid="action-result">{message.text}</p>}
      <table class="schedules">
        <thead><tr><th>schedule id</th><th>workflow</th><th>state</th><th>next action</th><th>actions taken</th><th>note</th><th></th></tr></thead>
        <tbody>
          {data?.schedules.map((s) => (
            <tr data-schedule-id={s.scheduleId}>
              <td>{s.scheduleId}</td>
              <td>{s.workflowName}</td>
              <td>{s.paused ? "paused" : "active"}</td>
              <td>{time(s.nextActionTime)}</td>
              <td>{s.actionCount.toString()}</td>
              <td>{s.note}</td>
              <td>
                <button onClick={() => void act(s.paused ? "resume" : "pause", () => (s.paused ? schedules.resumeSchedule({ scheduleId: s.scheduleId, note: "resumed from the web UI" }) : schedules.pauseSchedule({ scheduleId: s.scheduleId, note: "paused from the web UI" })))}>
                  {s.paused ? "Resume" : "Pause"}
                </button>
                <button onClick={() => void act("trigger", () => schedules.triggerSchedule({ scheduleId: s.scheduleId, requestId: randomUuid() }))}>Trigger now</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && data.schedules.length === 0 && <p>No schedules (create one with `dex schedule create`).</p>}
      <div class="paging">
        <button disabled={tokens.length === 1} onClick={() => setTokens(tokens.slice(0, -1))}>Previous</button>
        <button disabled={!data?.nextPageToken} onClick={() => data && setTokens([...tokens, data.nextPageToken])}>Next</button>
      </div>
    </section>
  );
}

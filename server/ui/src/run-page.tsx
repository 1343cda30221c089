/** One run: what it is, why it waits, what is pending, its history (timeline and table), and actions. Followed live (use-run-follow.ts). */
import { eventKind, fieldsText, payloadText, statusName, time } from "./format.js";
import { RunActions } from "./run-actions.js";
import { Timeline } from "./timeline.js";
import { useRunFollow } from "./use-run-follow.js";

const runLink = (id: string) => <a href={`#/runs/${encodeURIComponent(id)}`}>{id}</a>;

export function RunPage({ runId }: { runId: string }) {
  const { describe: d, events, historyLength, error, redescribe } = useRunFollow(runId);
  const info = d?.info;
  return (
    <section>
      <h1>Run {runId}</h1>
      {error && <p class="error" role="alert">{error}</p>}
      {info && d && (
        <>
          <dl class="facts">
            <dt>instance id</dt><dd data-testid="instance-id">{info.instanceId}</dd>
            <dt>workflow</dt><dd>{info.workflowName}</dd>
            <dt>task queue</dt><dd>{info.taskQueue}</dd>
            <dt>status</dt><dd class={`status s-${statusName(info.status)}`} data-testid="run-status">{statusName(info.status)}</dd>
            <dt>custom status</dt><dd>{info.customStatus}</dd>
            <dt>labels</dt><dd>{Object.entries(info.labels).map(([k, v]) => `${k}=${v}`).join(", ")}</dd>
            <dt>waiting for</dt><dd data-testid="waiting-reason">{d.waitingReason || "—"}</dd>
            <dt>created</dt><dd>{time(info.createTime)}</dd>
            <dt>ended</dt><dd>{time(info.endTime)}</dd>
            {info.parentRunId && (<><dt>parent</dt><dd>{runLink(info.parentRunId)}</dd></>)}
            {d.continuedAsRunId && (<><dt>continued as</dt><dd>{runLink(d.continuedAsRunId)}</dd></>)}
            {d.resetFromRunId && (<><dt>reset from</dt><dd data-testid="reset-from">{runLink(d.resetFromRunId)}{d.resetReason ? ` (${d.resetReason})` : ""}</dd></>)}
            {d.resetToRunId && (<><dt>reset to</dt><dd data-testid="reset-to">{runLink(d.resetToRunId)}</dd></>)}
          </dl>
          <RunActions runId={runId} events={events} onDone={redescribe} />
          <div class="payloads">
            <div><h2>Input</h2><pre>{payloadText(d.input)}</pre></div>
            <div><h2>Result</h2><pre data-testid="result">{d.failure ? fieldsText(d.failure) : payloadText(d.result)}</pre></div>
          </div>
          <h2>Pending</h2>
          <ul class="pending" data-testid="pending">
            {d.pendingActivities.map((a) => (
              <li>activity #{a.seq} {a.activityName} on {a.taskQueue}: attempt {a.attempt}{a.running ? ", running" : ""}{a.nextAttemptTime ? `, next attempt ${time(a.nextAttemptTime)}` : ""}{a.lastFailure ? `, last failure: ${a.lastFailure.message}` : ""}{a.waitingReason ? ` (${a.waitingReason})` : ""}</li>
            ))}
            {d.pendingTimers.map((t) => <li>timer #{t.seq} fires {time(t.fireTime)}</li>)}
            {d.pendingEventWaits.map((w) => <li>event "{w.eventName}"{w.eventId ? ` id ${w.eventId}` : ""}{w.timeoutTime ? `, times out ${time(w.timeoutTime)}` : ""}</li>)}
            {d.pendingChildRuns.map((c) => <li>child {c.workflowName} {c.instanceId}: {c.runId ? runLink(c.runId) : "starting"}</li>)}
            {d.pendingWorkflowTask && <li>workflow task attempt {d.pendingWorkflowTask.attempt}{d.pendingWorkflowTask.running ? ", running" : ""}</li>}
          </ul>
          <h2>History ({historyLength.toString()} events)</h2>
          {BigInt(events.length) < historyLength && <p>Read {events.length} so far…</p>}
          <Timeline events={events} />
          <table class="history">
            <thead><tr><th>#</th><th>time</th><th>event</th></tr></thead>
            <tbody>
              {events.map((event) => (
                <tr key={event.sequence.toString()}>
                  <td>{event.sequence.toString()}</td>
                  <td>{time(event.time)}</td>
                  <td>
                    <details>
                      <summary>{eventKind(event.attributes.case)}</summary>
                      <pre>{fieldsText(event.attributes.value)}</pre>
                    </details>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

/**
 * The dex web UI: hash routes (#/runs?<filters>, #/runs/<run id>, #/queues, #/schedules) so the server
 * only ever serves index.html, app.js and app.css. A call refused for want of a key shows the key form.
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { apiKey, setApiKey } from "./api.js";
import { QueuesPage } from "./queues-page.js";
import { RunPage } from "./run-page.js";
import { RunsPage } from "./runs-page.js";
import { SchedulesPage } from "./schedules-page.js";

/**
 * The hash, and how many times it changed: the runs page rewrites its filters into the hash with
 * replaceState (no event), so a later change back to the same text (the "Runs" link) must still
 * remount the page, which the count does as its key.
 */
function useHash(): { hash: string; changes: number } {
  const [state, setState] = useState({ hash: location.hash, changes: 0 });
  useEffect(() => {
    const onChange = () => setState((s) => ({ hash: location.hash, changes: s.changes + 1 }));
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return state;
}

function KeyForm() {
  const [key, setKey] = useState(apiKey() ?? "");
  return (
    <form
      class="key"
      onSubmit={(e) => {
        e.preventDefault();
        setApiKey(key.trim() || null);
        location.reload();
      }}
    >
      <input type="password" name="api-key" placeholder="API key (dex auth create)" value={key} onInput={(e) => setKey(e.currentTarget.value)} />
      <button type="submit">{apiKey() ? "Change key" : "Use key"}</button>
      {apiKey() && (
        <button type="button" onClick={() => (setApiKey(null), location.reload())}>
          Forget
        </button>
      )}
    </form>
  );
}

function App() {
  const { hash, changes } = useHash();
  const [path = "", query = ""] = hash.split("?", 2);
  const runMatch = /^#\/runs\/(.+)$/.exec(path);
  const section = runMatch ? "runs" : path === "#/queues" ? "queues" : path === "#/schedules" ? "schedules" : "runs";
  const page = runMatch ? (
    <RunPage key={runMatch[1]} runId={decodeURIComponent(runMatch[1]!)} />
  ) : section === "queues" ? (
    <QueuesPage />
  ) : section === "schedules" ? (
    <SchedulesPage />
  ) : (
    <RunsPage key={changes} query={query} />
  );
  const link = (name: string, label: string) => (
    <a href={`#/${name}`} class={section === name ? "active" : ""}>
      {label}
    </a>
  );
  return (
    <>
      <header>
        <strong>dex</strong>
        <nav>
          {link("runs", "Runs")}
          {link("queues", "Task queues")}
          {link("schedules", "Schedules")}
        </nav>
        <KeyForm />
      </header>
      <main>{page}</main>
    </>
  );
}

render(<App />, document.getElementById("app")!);

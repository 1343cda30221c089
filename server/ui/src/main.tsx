/**
 * The dex web UI: hash routes (#/runs, #/runs/<run id>, #/queues, #/schedules) so the server only ever serves
 * index.html, app.js and app.css. A call refused for want of a key shows the key form.
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { apiKey, setApiKey } from "./api.js";
import { QueuesPage } from "./queues-page.js";
import { RunPage } from "./run-page.js";
import { RunsPage } from "./runs-page.js";
import { SchedulesPage } from "./schedules-page.js";

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const onChange = () => setHash(location.hash);
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return hash;
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
  const hash = useHash();
  const runMatch = /^#\/runs\/(.+)$/.exec(hash);
  const section = runMatch ? "runs" : hash === "#/queues" ? "queues" : hash === "#/schedules" ? "schedules" : "runs";
  const page = runMatch ? <RunPage runId={decodeURIComponent(runMatch[1]!)} /> : section === "queues" ? <QueuesPage /> : section === "schedules" ? <SchedulesPage /> : <RunsPage />;
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

/**
 * The dex web UI: hash routes (#/runs, #/runs/<run id>, #/queues) so the server only ever serves
 * index.html, app.js and app.css. A call refused for want of a key shows the key form.
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { apiKey, setApiKey } from "./api.js";
import { QueuesPage } from "./queues-page.js";
import { RunPage } from "./run-page.js";
import { RunsPage } from "./runs-page.js";

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
  const page = runMatch ? <RunPage runId={decodeURIComponent(runMatch[1]!)} /> : hash === "#/queues" ? <QueuesPage /> : <RunsPage />;
  return (
    <>
      <header>
        <strong>dex</strong>
        <nav>
          <a href="#/runs" class={hash.startsWith("#/queues") ? "" : "active"}>Runs</a>
          <a href="#/queues" class={hash.startsWith("#/queues") ? "active" : ""}>Task queues</a>
        </nav>
        <KeyForm />
      </header>
      <main>{page}</main>
    </>
  );
}

render(<App />, document.getElementById("app")!);

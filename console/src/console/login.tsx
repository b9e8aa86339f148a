/** The console's door: an API key, checked against the graph before it is kept. */
import { useState, type FormEvent } from "react";

import { Graph, GraphRefused } from "./graph";
import { saveKey } from "./session";

const ME = "query Me { me { email } }";

export function Login({ onSignedIn }: { onSignedIn: (graph: Graph) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [checking, setChecking] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setChecking(true);
    setError(null);
    const graph = new Graph(key.trim());
    try {
      await graph.request(ME);
      saveKey(key.trim());
      onSignedIn(graph);
    } catch (refused) {
      graph.close();
      const code = refused instanceof GraphRefused ? refused.code : undefined;
      const why = refused instanceof Error ? refused.message : String(refused);
      setError(code ? `${why} (${code})` : why);
    } finally {
      setChecking(false);
    }
  };

  return (
    <main className="login">
      <h1>Loom console</h1>
      <form onSubmit={submit}>
        <label htmlFor="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autoComplete="off"
          value={key}
          onChange={(event) => setKey(event.target.value)}
          placeholder="loom_…"
          required
        />
        <button type="submit" disabled={checking || !key.trim()}>
          Sign in
        </button>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
      </form>
      <p className="hint">
        The key stays in this tab's session storage and is sent only to this gateway.{" "}
        <code>make dev</code> prints a demo key.
      </p>
    </main>
  );
}

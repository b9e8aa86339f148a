/**
 * The Loom console: a live dashboard on the public graph, served by the gateway at /console.
 * Everything it shows comes from queries and subscriptions any client may send with the same
 * API key; nothing on it needs a reload.
 */
import "./console.css";

import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";

import { Graph } from "./graph";
import { Login } from "./login";
import { forgetKey, savedKey } from "./session";
import { Shell } from "./shell";

function App() {
  const [graph, setGraph] = useState<Graph | null>(() => {
    const key = savedKey();
    return key ? new Graph(key) : null;
  });
  if (graph === null) return <Login onSignedIn={setGraph} />;
  const signOut = () => {
    graph.close();
    forgetKey();
    setGraph(null);
  };
  return <Shell graph={graph} onSignOut={signOut} />;
}

createRoot(document.getElementById("console")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);

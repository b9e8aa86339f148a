/**
 * GraphiQL as Loom serves it at GET /graphql: every script, style, font and editor worker is
 * bundled here and served by the gateway itself, so the page works without internet access.
 */
import "graphiql/setup-workers/vite";
import "graphiql/style.css";
import "@graphiql/plugin-explorer/style.css";
import "./page.css";

import { explorerPlugin } from "@graphiql/plugin-explorer";
import { GraphiQL } from "graphiql";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { loomFetcher } from "./fetcher";
import { defaultHeaders } from "./headers";

const headers = defaultHeaders();
const welcome = `# Loom's GraphQL API. Put your API key in Headers below:
#   {"Authorization": "Bearer <key>"}
# (\`make dev\` prints a demo key), then run this query.

{
  me {
    email
  }
}
`;
const plugins = [explorerPlugin()];

createRoot(document.getElementById("graphiql")!).render(
  <StrictMode>
    <GraphiQL
      fetcher={loomFetcher()}
      plugins={plugins}
      defaultQuery={welcome}
      isHeadersEditorEnabled
      defaultHeaders={headers}
      initialHeaders={headers}
      defaultEditorToolsVisibility="headers"
    />
  </StrictMode>,
);

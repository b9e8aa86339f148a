/**
 * GraphiQL's fetcher for Loom: queries and mutations are POSTed to /graphql, subscriptions
 * run over graphql-transport-ws on the same URL.
 *
 * The toolkit merges the headers editor's JSON into the WebSocket's connection_init payload,
 * so `{"Authorization": "Bearer <key>"}` authenticates subscriptions exactly as it does HTTP
 * requests (the gateway reads the same key from either place).
 */
import { createGraphiQLFetcher, type Fetcher } from "@graphiql/toolkit";

export function loomFetcher(): Fetcher {
  const http = new URL("/graphql", window.location.href);
  const ws = new URL(http);
  ws.protocol = http.protocol === "https:" ? "wss:" : "ws:";
  return createGraphiQLFetcher({
    url: http.href,
    subscriptionUrl: ws.href,
    // Loom serves neither @defer nor @stream: plain JSON responses, no multipart parsing.
    enableIncrementalDelivery: false,
  });
}

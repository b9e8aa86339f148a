/**
 * The console's one connection to the public graph: queries and mutations over HTTP, live
 * data over one graphql-ws WebSocket. It uses nothing a third-party frontend could not.
 *
 * graphql-ws reconnects a dropped socket by itself, waiting longer after each failed attempt
 * (its randomised exponential backoff); the console only listens to what it reports, so the
 * page can say "reconnecting" and resubscribe when the socket is back.
 */
import { createClient, type Client } from "graphql-ws";

export type GraphError = {
  message: string;
  extensions?: { code?: string; [key: string]: unknown };
};

export class GraphRefused extends Error {
  readonly errors: GraphError[];

  constructor(errors: GraphError[]) {
    super(errors.map((error) => error.message).join("; "));
    this.errors = errors;
  }

  get code(): string | undefined {
    return this.errors[0]?.extensions?.code;
  }
}

export type Connection = "connecting" | "connected" | "reconnecting";

export type Subscription<T> = {
  next: (data: T) => void;
  error: (error: GraphRefused) => void;
};

const httpUrl = "/graphql";

function wsUrl(): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/graphql`;
}

export class Graph {
  private readonly key: string;
  private readonly ws: Client;
  private readonly listeners = new Set<(state: Connection) => void>();
  state: Connection = "connecting";

  constructor(key: string) {
    this.key = key;
    this.ws = createClient({
      url: wsUrl(),
      connectionParams: { Authorization: `Bearer ${key}` },
      lazy: true,
      retryAttempts: Number.POSITIVE_INFINITY,
      shouldRetry: () => true,
      on: {
        connected: () => this.report("connected"),
        closed: () => this.report(this.state === "connecting" ? "connecting" : "reconnecting"),
      },
    });
  }

  private report(state: Connection): void {
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  onConnection(listener: (state: Connection) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async request<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const response = await fetch(httpUrl, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/graphql-response+json, application/json",
        Authorization: `Bearer ${this.key}`,
      },
      body: JSON.stringify({ query, variables }),
    });
    let body: { data?: T | null; errors?: GraphError[] };
    try {
      body = await response.json();
    } catch {
      throw new GraphRefused([{ message: `The gateway answered ${response.status}` }]);
    }
    if (body.errors?.length) throw new GraphRefused(body.errors);
    return body.data as T;
  }

  subscribe<T>(
    query: string,
    variables: Record<string, unknown>,
    sink: Subscription<T>,
  ): () => void {
    return this.ws.subscribe<T>(
      { query, variables },
      {
        next: (result) => {
          if (result.errors?.length) {
            sink.error(new GraphRefused(result.errors as GraphError[]));
          } else if (result.data) {
            sink.next(result.data as T);
          }
        },
        error: (error) => sink.error(asRefused(error)),
        complete: () => undefined,
      },
    );
  }

  /** GET a file the graph names (an export's archive, an item's bytes) with the key. */
  async fetchFile(url: string): Promise<Blob> {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${this.key}` } });
    if (!response.ok) throw new GraphRefused([{ message: `${url} answered ${response.status}` }]);
    return await response.blob();
  }

  async download(url: string, name: string): Promise<void> {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await this.fetchFile(url));
    link.download = name;
    link.click();
    URL.revokeObjectURL(link.href);
  }

  close(): void {
    void this.ws.dispose();
  }
}

function asRefused(error: unknown): GraphRefused {
  if (Array.isArray(error)) return new GraphRefused(error as GraphError[]);
  if (error instanceof CloseEvent) {
    return new GraphRefused([{ message: `The connection closed: ${error.reason || error.code}` }]);
  }
  return new GraphRefused([{ message: String(error) }]);
}

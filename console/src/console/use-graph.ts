/** React hooks over the console's Graph: a query's state, and a live subscription. */
import { useCallback, useEffect, useRef, useState } from "react";

import { Graph, GraphRefused } from "./graph";
import { asRefused } from "./parts";

export type QueryState<T> = {
  data: T | null;
  error: GraphRefused | null;
  refetch: () => void;
};

export function useQuery<T>(graph: Graph, query: string, variables: Record<string, unknown>): QueryState<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<GraphRefused | null>(null);
  const [round, setRound] = useState(0);
  const wanted = JSON.stringify(variables);
  useEffect(() => {
    let current = true;
    graph
      .request<T>(query, JSON.parse(wanted))
      .then((found) => {
        if (current) {
          setData(found);
          setError(null);
        }
      })
      .catch((refused: unknown) => {
        if (current) setError(asRefused(refused));
      });
    return () => {
      current = false;
    };
  }, [graph, query, wanted, round]);
  const refetch = useCallback(() => setRound((n) => n + 1), []);
  return { data, error, refetch };
}

/**
 * Subscribe while mounted; `onBatch` gets every message that arrived since the last animation
 * frame at once, so a thousand updates a second cost one render a frame, not a thousand.
 */
export function useSubscription<T>(
  graph: Graph,
  query: string,
  variables: Record<string, unknown>,
  onBatch: (messages: T[]) => void,
): GraphRefused | null {
  const [error, setError] = useState<GraphRefused | null>(null);
  const handler = useRef(onBatch);
  handler.current = onBatch;
  const wanted = JSON.stringify(variables);
  useEffect(() => {
    let pending: T[] = [];
    let frame: number | null = null;
    const flush = () => {
      frame = null;
      const batch = pending;
      pending = [];
      handler.current(batch);
    };
    const stop = graph.subscribe<T>(query, JSON.parse(wanted), {
      next: (message) => {
        pending.push(message);
        frame ??= requestAnimationFrame(flush);
      },
      error: setError,
    });
    return () => {
      stop();
      if (frame !== null) cancelAnimationFrame(frame);
    };
  }, [graph, query, wanted]);
  return error;
}

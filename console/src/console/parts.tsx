/** Small pieces every page uses: errors said in full, times, statuses, JSON. */
import { useCallback, useEffect, useRef } from "react";

import { GraphRefused } from "./graph";

export function Refusal({ error, prefix = "" }: { error: GraphRefused | null; prefix?: string }) {
  if (!error) return null;
  return (
    <p role="alert" className="error">
      {prefix}
      {error.message}
      {error.code && ` (${error.code})`}
    </p>
  );
}

export function When({ at }: { at: string | null | undefined }) {
  if (!at) return <>—</>;
  return <time dateTime={at}>{new Date(at).toLocaleTimeString()}</time>;
}

export function Status({ value }: { value: string }) {
  return <span className={`status ${value}`}>{value}</span>;
}

export function Json({ value }: { value: unknown }) {
  return <pre>{value === null || value === undefined ? "—" : JSON.stringify(value, null, 2)}</pre>;
}

export function asRefused(error: unknown): GraphRefused {
  return error instanceof GraphRefused ? error : new GraphRefused([{ message: String(error) }]);
}

/** `action` at most once per `ms`, however often the returned function is called. */
export function useThrottled(action: () => void, ms: number): () => void {
  const timer = useRef<number | null>(null);
  const latest = useRef(action);
  latest.current = action;
  useEffect(
    () => () => {
      if (timer.current !== null) clearTimeout(timer.current);
    },
    [],
  );
  return useCallback(() => {
    timer.current ??= window.setTimeout(() => {
      timer.current = null;
      latest.current();
    }, ms);
  }, [ms]);
}

/** Rows updated by a batch of live messages: changed ones replaced, new ones first. */
export function upserted<T extends { id: string }>(shown: T[], batch: T[], limit: number): T[] {
  const latest = new Map(batch.map((row) => [row.id, row]));
  const known = new Set(shown.map((row) => row.id));
  const added = [...latest.values()].filter((row) => !known.has(row.id)).reverse();
  return [...added, ...shown.map((row) => latest.get(row.id) ?? row)].slice(0, limit);
}

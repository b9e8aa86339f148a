/**
 * The executions page: counts by status for the project and each service, a filterable table
 * of the newest executions with their progress, and one execution's status log, logs, input and
 * output — all kept live by `executionUpdated(projectId)`. Terminate and rerun are offered only
 * to callers whose project permissions include RUN_EXECUTIONS (the graph refuses anyone else).
 */
import { useEffect, useMemo, useRef, useState } from "react";

import { Graph, GraphRefused } from "./graph";
import { Refusal, asRefused, useThrottled } from "./parts";
import { useQuery, useSubscription } from "./use-graph";

const STATUSES = ["created", "inProgress", "success", "failed", "aborted", "terminated"];
const SHOWN = 100;

const ROW = "id serviceId function status progress attempts maxAttempts triggerId createdAt updatedAt";

const PAGE = `query ExecutionsPage($p: ID!, $statuses: [String!], $filter: JSON, $first: Int!) {
  project(id: $p) {
    id name permissions
    executionCounts { status count }
    services(first: 100) { nodes { id name executionCounts { status count } } }
    executions(statuses: $statuses, filter: $filter, first: $first) { nodes { ${ROW} } }
  }
}`;

const COUNTS = `query ExecutionCounts($p: ID!) {
  project(id: $p) {
    executionCounts { status count }
    services(first: 100) { nodes { id name executionCounts { status count } } }
  }
}`;

const UPDATES = `subscription ExecutionUpdates($p: ID!) { executionUpdated(projectId: $p) { ${ROW} } }`;

const DETAIL = `query Execution($id: ID!) { execution(id: $id) {
  ${ROW} input output error logs duration statusLog { status time message } } }`;

const DETAIL_UPDATES = `subscription ExecutionDetail($id: ID!) { executionUpdated(executionId: $id) {
  ${ROW} input output error logs duration statusLog { status time message } } }`;

const TERMINATE = "mutation Terminate($id: ID!) { terminateExecution(id: $id) { id status } }";
const RERUN = "mutation Rerun($id: ID!) { rerunExecution(id: $id) { id status } }";

type Count = { status: string; count: number };
type Row = {
  id: string;
  serviceId: string;
  function: string;
  status: string;
  progress: { percent?: number; message?: string };
  attempts: number;
  maxAttempts: number;
  triggerId: string | null;
  createdAt: string;
  updatedAt: string;
};
type Detail = Row & {
  input: unknown;
  output: unknown;
  error: string | null;
  logs: string[];
  duration: number | null;
  statusLog: { status: string; time: string; message: string }[];
};
type Services = { nodes: { id: string; name: string; executionCounts: Count[] }[] };
type Page = {
  project: {
    id: string;
    name: string;
    permissions: string[];
    executionCounts: Count[];
    services: Services;
    executions: { nodes: Row[] };
  };
};
type Counts = { project: { executionCounts: Count[]; services: Services } };

type Filters = { status: string; fn: string; trigger: string; since: string };

function dql(filters: Filters): Record<string, unknown> | null {
  const clauses: Record<string, unknown> = {};
  if (filters.fn) clauses.function = filters.fn;
  if (filters.trigger) clauses.triggerId = filters.trigger;
  if (filters.since) clauses.createdAt = { $gte: new Date(filters.since).toISOString() };
  return Object.keys(clauses).length ? clauses : null;
}

function matches(row: Row, filters: Filters): boolean {
  return (
    (!filters.status || row.status === filters.status) &&
    (!filters.fn || row.function === filters.fn) &&
    (!filters.trigger || row.triggerId === filters.trigger) &&
    (!filters.since || new Date(row.createdAt) >= new Date(filters.since))
  );
}

function countOf(counts: Count[], status: string): number {
  return counts.find((entry) => entry.status === status)?.count ?? 0;
}

export function Executions({ graph, projectId }: { graph: Graph; projectId: string }) {
  const [filters, setFilters] = useState<Filters>({ status: "", fn: "", trigger: "", since: "" });
  const variables = useMemo(
    () => ({ p: projectId, statuses: filters.status ? [filters.status] : null, filter: dql(filters), first: SHOWN }),
    [projectId, filters],
  );
  const page = useQuery<Page>(graph, PAGE, variables);
  const [rows, setRows] = useState<Row[]>([]);
  const [counts, setCounts] = useState<Counts["project"] | null>(null);
  const [chosen, setChosen] = useState<string | null>(null);

  useEffect(() => {
    if (page.data) {
      setRows(page.data.project.executions.nodes);
      setCounts(page.data.project);
    }
  }, [page.data]);

  const refreshCounts = useThrottled(() => {
    graph
      .request<Counts>(COUNTS, { p: projectId })
      .then((found) => setCounts(found.project))
      .catch(() => undefined);
  }, 500);

  const filtersRef = useRef(filters);
  filtersRef.current = filters;
  const live = useSubscription<{ executionUpdated: Row }>(graph, UPDATES, { p: projectId }, (batch) => {
    const latest = new Map<string, Row>();
    for (const { executionUpdated: row } of batch) latest.set(row.id, row);
    setRows((shown) => {
      const next = shown.map((row) => latest.get(row.id) ?? row);
      const known = new Set(shown.map((row) => row.id));
      const added = [...latest.values()].filter((row) => !known.has(row.id) && matches(row, filtersRef.current));
      const kept = next.filter((row) => matches(row, filtersRef.current));
      return [...added.reverse(), ...kept]
        .sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.id < b.id ? 1 : -1))
        .slice(0, SHOWN);
    });
    refreshCounts();
  });

  if (page.error) return <Refusal error={page.error} />;
  if (!page.data) return <p className="loading">Loading executions…</p>;
  const project = page.data.project;
  const canRun = project.permissions.includes("RUN_EXECUTIONS");
  const serviceName = new Map(counts?.services.nodes.map((service) => [service.id, service.name]));

  return (
    <main className="executions">
      <h1>Executions · {project.name}</h1>
      <Refusal error={live} prefix="Live updates stopped: " />
      <section aria-label="Executions by status">
        <table className="counts">
          <thead>
            <tr>
              <th scope="col">Service</th>
              {STATUSES.map((status) => (
                <th scope="col" key={status}>
                  {status}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            <tr data-service="all">
              <th scope="row">All services</th>
              {STATUSES.map((status) => (
                <td key={status} data-status={status}>
                  {countOf(counts?.executionCounts ?? [], status)}
                </td>
              ))}
            </tr>
            {counts?.services.nodes.map((service) => (
              <tr key={service.id} data-service={service.id}>
                <th scope="row">{service.name}</th>
                {STATUSES.map((status) => (
                  <td key={status} data-status={status}>
                    {countOf(service.executionCounts, status)}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <form className="filters" aria-label="Filter executions" onSubmit={(event) => event.preventDefault()}>
        <label>
          Status
          <select value={filters.status} onChange={(event) => setFilters({ ...filters, status: event.target.value })}>
            <option value="">any</option>
            {STATUSES.map((status) => (
              <option key={status}>{status}</option>
            ))}
          </select>
        </label>
        <label>
          Function
          <input value={filters.fn} onChange={(event) => setFilters({ ...filters, fn: event.target.value })} />
        </label>
        <label>
          Trigger id
          <input value={filters.trigger} onChange={(event) => setFilters({ ...filters, trigger: event.target.value })} />
        </label>
        <label>
          Since
          <input
            type="datetime-local"
            value={filters.since}
            onChange={(event) => setFilters({ ...filters, since: event.target.value })}
          />
        </label>
      </form>
      <div className="split">
        <table className="rows" aria-label="Executions">
          <thead>
            <tr>
              <th scope="col">Function</th>
              <th scope="col">Service</th>
              <th scope="col">Status</th>
              <th scope="col">Progress</th>
              <th scope="col">Attempts</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr
                key={row.id}
                data-execution={row.id}
                className={row.id === chosen ? "chosen" : undefined}
                onClick={() => setChosen(row.id)}
              >
                <td>
                  <button type="button" className="link" onClick={() => setChosen(row.id)}>
                    {row.function}
                  </button>
                </td>
                <td>{serviceName.get(row.serviceId) ?? row.serviceId}</td>
                <td className={`status ${row.status}`} data-status>
                  {row.status}
                </td>
                <td>
                  <progress max={100} value={row.progress?.percent ?? 0} aria-label={`progress of ${row.function}`} />
                </td>
                <td>
                  {row.attempts}/{row.maxAttempts}
                </td>
                <td>
                  <time dateTime={row.createdAt}>{new Date(row.createdAt).toLocaleTimeString()}</time>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {chosen && <ExecutionDetail key={chosen} graph={graph} id={chosen} canRun={canRun} />}
      </div>
      {rows.length === 0 && <p className="empty">No execution matches.</p>}
    </main>
  );
}

function ExecutionDetail({ graph, id, canRun }: { graph: Graph; id: string; canRun: boolean }) {
  const found = useQuery<{ execution: Detail }>(graph, DETAIL, { id });
  const [execution, setExecution] = useState<Detail | null>(null);
  const [refused, setRefused] = useState<GraphRefused | null>(null);
  useEffect(() => {
    if (found.data) setExecution(found.data.execution);
  }, [found.data]);
  useSubscription<{ executionUpdated: Detail }>(graph, DETAIL_UPDATES, { id }, (batch) => {
    setExecution(batch[batch.length - 1].executionUpdated);
  });
  const act = async (mutation: string) => {
    setRefused(null);
    try {
      await graph.request(mutation, { id });
    } catch (error) {
      setRefused(asRefused(error));
    }
  };
  if (found.error) return <aside className="detail error">{found.error.message}</aside>;
  if (!execution) return <aside className="detail">Loading…</aside>;
  const finished = !["created", "inProgress"].includes(execution.status);
  return (
    <aside className="detail" aria-label={`Execution ${execution.id}`}>
      <h2>
        {execution.function} <span className={`status ${execution.status}`}>{execution.status}</span>
      </h2>
      {canRun && (
        <div className="actions">
          <button type="button" disabled={finished} onClick={() => act(TERMINATE)}>
            Terminate
          </button>
          <button type="button" disabled={!finished} onClick={() => act(RERUN)}>
            Rerun
          </button>
        </div>
      )}
      <Refusal error={refused} />
      {execution.error && <p className="error">{execution.error}</p>}
      <h3>Status log</h3>
      <ol className="status-log">
        {execution.statusLog.map((entry, index) => (
          <li key={index}>
            <time dateTime={entry.time}>{new Date(entry.time).toLocaleTimeString()}</time> <b>{entry.status}</b>{" "}
            {entry.message}
          </li>
        ))}
      </ol>
      <h3>Logs</h3>
      <pre className="logs">{execution.logs.join("\n") || "—"}</pre>
      <h3>Input</h3>
      <pre>{JSON.stringify(execution.input, null, 2)}</pre>
      <h3>Output</h3>
      <pre>{execution.output === null ? "—" : JSON.stringify(execution.output, null, 2)}</pre>
    </aside>
  );
}

/**
 * The commands page: the project's long operations (clones, versions, batches, imports,
 * exports, commits…) with live progress bars, from `commandUpdated(projectId)`; an export's
 * archive downloads with the signed-in key.
 */
import { useEffect, useState } from "react";

import { Graph } from "./graph";
import { Json, Refusal, Status, When, upserted } from "./parts";
import { useQuery, useSubscription } from "./use-graph";

const FIELDS = "id type status progress error result archiveUrl createdAt updatedAt";
const LIST = `query Commands($p: ID!) { project(id: $p) { id name commands(first: 50) { nodes { ${FIELDS} } } } }`;
const UPDATES = `subscription CommandUpdates($p: ID!) { commandUpdated(projectId: $p) { ${FIELDS} } }`;

type Command = {
  id: string;
  type: string;
  status: string;
  progress: number;
  error: string | null;
  result: unknown;
  archiveUrl: string | null;
  createdAt: string;
  updatedAt: string;
};

export function Commands({ graph, projectId }: { graph: Graph; projectId: string }) {
  const list = useQuery<{ project: { name: string; commands: { nodes: Command[] } } }>(graph, LIST, { p: projectId });
  const [rows, setRows] = useState<Command[]>([]);
  const [chosen, setChosen] = useState<string | null>(null);
  useEffect(() => {
    if (list.data) setRows(list.data.project.commands.nodes);
  }, [list.data]);
  const live = useSubscription<{ commandUpdated: Command }>(graph, UPDATES, { p: projectId }, (batch) =>
    setRows((shown) => upserted(shown, batch.map((message) => message.commandUpdated), 50)),
  );
  if (list.error) return <Refusal error={list.error} />;
  if (!list.data) return <p className="loading">Loading commands…</p>;
  const detail = rows.find((row) => row.id === chosen);
  return (
    <main className="commands">
      <h1>Commands · {list.data.project.name}</h1>
      <Refusal error={live} prefix="Live updates stopped: " />
      <div className="split">
        <table className="rows" aria-label="Commands">
          <thead>
            <tr>
              <th scope="col">Type</th>
              <th scope="col">Status</th>
              <th scope="col">Progress</th>
              <th scope="col">Created</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={row.id} data-command={row.id} className={row.id === chosen ? "chosen" : undefined}>
                <td>
                  <button type="button" className="link" onClick={() => setChosen(row.id)}>
                    {row.type}
                  </button>
                </td>
                <td data-status>
                  <Status value={row.status} />
                </td>
                <td>
                  <progress max={100} value={row.progress} aria-label={`progress of ${row.type}`} />{" "}
                  <span data-progress>{row.progress}%</span>
                </td>
                <td>
                  <When at={row.createdAt} />
                </td>
                <td>
                  <When at={row.updatedAt} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {detail && (
          <aside className="detail" aria-label={`Command ${detail.id}`}>
            <h2>
              {detail.type} <Status value={detail.status} />
            </h2>
            {detail.error && <p className="error">{detail.error}</p>}
            {detail.archiveUrl && (
              <button type="button" onClick={() => void graph.download(detail.archiveUrl!, `${detail.type}-${detail.id}.zip`)}>
                Download the archive
              </button>
            )}
            <h3>Result</h3>
            <Json value={detail.result} />
          </aside>
        )}
      </div>
      {rows.length === 0 && <p className="empty">No command yet.</p>}
    </main>
  );
}

/**
 * The model runs page: each model's versions and their runs; a committed run's COCO metrics,
 * its precision–recall and F1–confidence curves (uPlot), its confusion matrix as a heat map,
 * and the TP / FP / FN browser over its match records. A run's metrics are read again when a
 * commit of the project's finishes (`commandUpdated(projectId)`).
 */
import { useState } from "react";

import { Chart } from "./chart";
import { Graph } from "./graph";
import { Refusal, Status, useThrottled } from "./parts";
import { useQuery, useSubscription } from "./use-graph";

const MODELS = `query Models($p: ID!) { project(id: $p) { id name models(first: 50) { nodes { id name
  versions(first: 20) { nodes { id version runs(first: 20) { nodes { id name status committedAt } } } } } } } }`;
const RUN = `query Run($id: ID!, $kind: MatchKind!) { modelRun(id: $id) { id name status
  metrics { ap ap50 ap75 precision recall f1 confidenceThreshold extrasIouThreshold
    perLabel { label ap tp fp fn precision recall f1 } curves confusionMatrix }
  matches(kind: $kind, first: 20) { nodes { kind label groundTruthLabel confidence iou item { id name } } } } }`;
const COMMITS = `subscription Commits($p: ID!) { commandUpdated(projectId: $p) { id type status } }`;
const KINDS = ["FP", "FN", "TP"] as const;

type Curve = { thresholds: number[]; precision: number[]; recall: number[]; f1: number[]; best_threshold: number | null };
type Metrics = {
  ap: number | null;
  ap50: number | null;
  ap75: number | null;
  precision: number;
  recall: number;
  f1: number;
  confidenceThreshold: number;
  extrasIouThreshold: number;
  perLabel: { label: string; ap: number | null; tp: number; fp: number; fn: number; precision: number; recall: number; f1: number }[];
  curves: { overall: Curve };
  confusionMatrix: { labels: string[]; matrix: number[][] };
};
type Match = { kind: string; label: string; groundTruthLabel: string | null; confidence: number | null; iou: number | null; item: { id: string; name: string } };
type Run = { id: string; name: string; status: string; metrics: Metrics | null; matches: { nodes: Match[] } };
type Models = {
  project: {
    name: string;
    models: {
      nodes: {
        id: string;
        name: string;
        versions: { nodes: { id: string; version: number; runs: { nodes: { id: string; name: string; status: string; committedAt: string | null }[] } }[] };
      }[];
    };
  };
};

/**
 * A heat-map cell's colours: light cells (dark text) up to half the largest count, dark cells
 * (white text) above it, never the mid-tones where neither text colour is readable (WCAG AA).
 */
function heat(share: number): { background: string; color: string } {
  const alpha = share < 0.5 ? share * 0.7 : 0.75 + (share - 0.5) * 0.5;
  return { background: `rgb(11 61 145 / ${alpha})`, color: share < 0.5 ? "#1b1f24" : "#fff" };
}

const rounded = (value: number | null) => (value === null ? "—" : value.toFixed(3));

export function Models({ graph, projectId }: { graph: Graph; projectId: string }) {
  const models = useQuery<Models>(graph, MODELS, { p: projectId });
  const [chosen, setChosen] = useState<string | null>(null);
  if (models.error) return <Refusal error={models.error} />;
  if (!models.data) return <p className="loading">Loading models…</p>;
  const runs = models.data.project.models.nodes.flatMap((model) =>
    model.versions.nodes.flatMap((version) => version.runs.nodes.map((run) => ({ ...run, model: model.name, version: version.version }))),
  );
  const shown = chosen ?? runs.find((run) => run.committedAt)?.id ?? null;
  return (
    <main className="models">
      <h1>Model runs · {models.data.project.name}</h1>
      <div className="split">
        <table className="rows" aria-label="Model runs">
          <thead>
            <tr>
              <th scope="col">Model</th>
              <th scope="col">Version</th>
              <th scope="col">Run</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {runs.map((run) => (
              <tr key={run.id} data-run={run.id} className={run.id === shown ? "chosen" : undefined}>
                <td>{run.model}</td>
                <td>{run.version}</td>
                <td>
                  <button type="button" className="link" onClick={() => setChosen(run.id)}>
                    {run.name}
                  </button>
                </td>
                <td>
                  <Status value={run.status} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {runs.length === 0 && <p className="empty">No model run.</p>}
      {shown && <RunDetail key={shown} graph={graph} projectId={projectId} id={shown} />}
    </main>
  );
}

function RunDetail({ graph, projectId, id }: { graph: Graph; projectId: string; id: string }) {
  const [kind, setKind] = useState<(typeof KINDS)[number]>("FP");
  const run = useQuery<{ modelRun: Run }>(graph, RUN, { id, kind });
  const reread = useThrottled(run.refetch, 500);
  useSubscription<{ commandUpdated: { type: string; status: string } }>(graph, COMMITS, { p: projectId }, (batch) => {
    if (batch.some(({ commandUpdated: c }) => c.type === "commitModelRun" && c.status === "success")) reread();
  });
  if (run.error) return <Refusal error={run.error} />;
  if (!run.data) return <p className="loading">Loading the run…</p>;
  const { metrics } = run.data.modelRun;
  if (!metrics) return <p className="empty">{run.data.modelRun.name} is not committed yet: it has no metrics.</p>;
  const curve = metrics.curves.overall;
  const { labels, matrix } = metrics.confusionMatrix;
  const most = Math.max(1, ...matrix.flat());
  return (
    <section aria-label={`Run ${run.data.modelRun.name}`} className="run">
      <h2>{run.data.modelRun.name}</h2>
      <dl className="tiles">
        {(
          [
            ["AP", metrics.ap],
            ["AP50", metrics.ap50],
            ["AP75", metrics.ap75],
            ["Precision", metrics.precision],
            ["Recall", metrics.recall],
            ["F1", metrics.f1],
          ] as const
        ).map(([name, value]) => (
          <div key={name}>
            <dt>{name}</dt>
            <dd>{rounded(value)}</dd>
          </div>
        ))}
      </dl>
      <div className="charts">
        <Chart
          title="Precision by recall"
          x="recall"
          series={[{ label: "precision", stroke: "#0b57d0" }]}
          data={[curve.recall, curve.precision]}
        />
        <Chart
          title="F1 by confidence"
          x="confidence"
          series={[{ label: "F1", stroke: "#0f6b36" }]}
          data={[[...curve.thresholds].reverse(), [...curve.f1].reverse()]}
        />
      </div>
      <h3>Confusion matrix (IoU {metrics.extrasIouThreshold})</h3>
      <table className="confusion" aria-label="Confusion matrix">
        <thead>
          <tr>
            <th scope="col">true \ predicted</th>
            {labels.map((label) => (
              <th scope="col" key={label}>
                {label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {matrix.map((row, r) => (
            <tr key={labels[r]}>
              <th scope="row">{labels[r]}</th>
              {row.map((count, c) => (
                <td key={c} style={heat(count / most)}>
                  {count}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Per label</h3>
      <table className="rows" aria-label="Per label">
        <thead>
          <tr>
            {["Label", "AP", "TP", "FP", "FN", "Precision", "Recall", "F1"].map((name) => (
              <th scope="col" key={name}>
                {name}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {metrics.perLabel.map((entry) => (
            <tr key={entry.label}>
              <td>{entry.label}</td>
              <td>{rounded(entry.ap)}</td>
              <td>{entry.tp}</td>
              <td>{entry.fp}</td>
              <td>{entry.fn}</td>
              <td>{rounded(entry.precision)}</td>
              <td>{rounded(entry.recall)}</td>
              <td>{rounded(entry.f1)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Matches</h3>
      <div role="group" aria-label="Match kind" className="actions">
        {KINDS.map((one) => (
          <button key={one} type="button" aria-pressed={one === kind} onClick={() => setKind(one)}>
            {one}
          </button>
        ))}
      </div>
      <ul className="matches" aria-label={`${kind} matches`}>
        {run.data.modelRun.matches.nodes.map((match, index) => (
          <li key={index}>
            {match.item.name}: {match.label}
            {match.groundTruthLabel && match.groundTruthLabel !== match.label && ` (truth ${match.groundTruthLabel})`}
            {match.confidence !== null && ` · confidence ${match.confidence.toFixed(2)}`}
            {match.iou !== null && ` · IoU ${match.iou.toFixed(2)}`}
          </li>
        ))}
        {run.data.modelRun.matches.nodes.length === 0 && <li className="empty">No {kind} match.</li>}
      </ul>
    </section>
  );
}

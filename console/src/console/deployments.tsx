/**
 * The deployments page: each deployment's champion (and shadow), its monitoring over the last
 * hour in 5-minute buckets — predictions, failures and latency per bucket as uPlot charts — and
 * its drift from the hour before (PSI of scores and labels, KS of scores). It is read again as
 * the deployment's predicted assets change (`predictions(deploymentId)`).
 */
import { useState } from "react";

import { Chart } from "./chart";
import { Graph } from "./graph";
import { Refusal, useThrottled } from "./parts";
import { useQuery, useSubscription } from "./use-graph";

const LIST = `query Deployments($p: ID!) { project(id: $p) { id name deployments(first: 50) { nodes {
  id name active champion { id version } shadow { id version } } } } }`;
const STATS = `query Stats($id: ID!, $referenceFrom: DateTime!, $referenceTo: DateTime!) { deployment(id: $id) {
  id name reviewCounts { accepted corrected rejected }
  stats(window: {since: "1h"}, bucket: "5m") {
    champion { modelVersionId total { predictionCount failedCount objectCount latencyMs { p50 p95 } }
      buckets { start predictionCount failedCount latencyMs { p50 p95 } } }
    drift(referenceFrom: $referenceFrom, referenceTo: $referenceTo) {
      objectCount referenceObjectCount scorePsi { value verdict } labelPsi { value verdict } scoreKs { d drifted } } } } }`;
const PREDICTIONS = `subscription Predictions($d: ID!) { predictions(deploymentId: $d) { id } }`;

type Bucket = { start: string; predictionCount: number; failedCount: number; latencyMs: { p50: number; p95: number } | null };
type Version = {
  modelVersionId: string;
  total: { predictionCount: number; failedCount: number; objectCount: number; latencyMs: { p50: number; p95: number } | null };
  buckets: Bucket[];
};
type Stats = {
  deployment: {
    name: string;
    reviewCounts: Record<string, number>;
    stats: {
      champion: Version[];
      drift: {
        objectCount: number;
        referenceObjectCount: number;
        scorePsi: { value: number; verdict: string } | null;
        labelPsi: { value: number; verdict: string } | null;
        scoreKs: { d: number; drifted: boolean } | null;
      };
    };
  };
};
type List = {
  project: {
    name: string;
    deployments: { nodes: { id: string; name: string; active: boolean; champion: { version: number } | null; shadow: { version: number } | null }[] };
  };
};

export function Deployments({ graph, projectId }: { graph: Graph; projectId: string }) {
  const list = useQuery<List>(graph, LIST, { p: projectId });
  const [chosen, setChosen] = useState<string | null>(null);
  if (list.error) return <Refusal error={list.error} />;
  if (!list.data) return <p className="loading">Loading deployments…</p>;
  const deployments = list.data.project.deployments.nodes;
  const shown = chosen ?? deployments[0]?.id ?? null;
  return (
    <main className="deployments">
      <h1>Deployments · {list.data.project.name}</h1>
      <ul className="choices" aria-label="Deployments">
        {deployments.map((deployment) => (
          <li key={deployment.id}>
            <button type="button" aria-pressed={deployment.id === shown} onClick={() => setChosen(deployment.id)}>
              {deployment.name} · champion v{deployment.champion?.version ?? "?"}
              {deployment.shadow && ` · shadow v${deployment.shadow.version}`}
              {!deployment.active && " (inactive)"}
            </button>
          </li>
        ))}
      </ul>
      {deployments.length === 0 && <p className="empty">No deployment.</p>}
      {shown && <Monitoring key={shown} graph={graph} id={shown} />}
    </main>
  );
}

function Monitoring({ graph, id }: { graph: Graph; id: string }) {
  const [reference] = useState(() => {
    const hour = 3600_000;
    const now = Date.now();
    return { referenceFrom: new Date(now - 2 * hour).toISOString(), referenceTo: new Date(now - hour).toISOString() };
  });
  const stats = useQuery<Stats>(graph, STATS, { id, ...reference });
  const reread = useThrottled(stats.refetch, 2000);
  const live = useSubscription(graph, PREDICTIONS, { d: id }, reread);
  if (stats.error) return <Refusal error={stats.error} />;
  if (!stats.data) return <p className="loading">Loading monitoring…</p>;
  const { champion, drift } = stats.data.deployment.stats;
  const buckets = champion.flatMap((version) => version.buckets).sort((a, b) => (a.start < b.start ? -1 : 1));
  const times = buckets.map((bucket) => new Date(bucket.start).getTime() / 1000);
  const total = champion.reduce((sum, version) => sum + version.total.predictionCount, 0);
  return (
    <section aria-label={`Monitoring of ${stats.data.deployment.name}`}>
      <Refusal error={live} prefix="Live updates stopped: " />
      <p data-predictions>
        {total} predictions in the last hour · reviews:{" "}
        {Object.entries(stats.data.deployment.reviewCounts)
          .filter(([name]) => name !== "__typename")
          .map(([name, count]) => `${name} ${count}`)
          .join(", ")}
      </p>
      <div className="charts">
        <Chart
          title="Predictions per 5 minutes"
          x="time"
          time
          series={[
            { label: "predictions", stroke: "#0b57d0" },
            { label: "failed", stroke: "#a3161a" },
          ]}
          data={[times, buckets.map((b) => b.predictionCount), buckets.map((b) => b.failedCount)]}
        />
        <Chart
          title="Latency (ms)"
          x="time"
          time
          series={[
            { label: "p50", stroke: "#0f6b36" },
            { label: "p95", stroke: "#8a5300" },
          ]}
          data={[times, buckets.map((b) => b.latencyMs?.p50 ?? null), buckets.map((b) => b.latencyMs?.p95 ?? null)]}
        />
      </div>
      <h3>Drift from the hour before</h3>
      <dl className="tiles">
        <div>
          <dt>Score PSI</dt>
          <dd>{drift.scorePsi ? `${drift.scorePsi.value.toFixed(3)} (${drift.scorePsi.verdict})` : "—"}</dd>
        </div>
        <div>
          <dt>Label PSI</dt>
          <dd>{drift.labelPsi ? `${drift.labelPsi.value.toFixed(3)} (${drift.labelPsi.verdict})` : "—"}</dd>
        </div>
        <div>
          <dt>Score KS</dt>
          <dd>{drift.scoreKs ? `D ${drift.scoreKs.d.toFixed(3)}${drift.scoreKs.drifted ? " (drifted)" : ""}` : "—"}</dd>
        </div>
        <div>
          <dt>Objects</dt>
          <dd>
            {drift.objectCount} vs {drift.referenceObjectCount}
          </dd>
        </div>
      </dl>
    </section>
  );
}

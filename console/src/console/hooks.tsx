/**
 * The webhooks and cron page: every delivery of the project's webhooks with its state, its
 * attempts (status, latency, the first bytes of the answer) live from
 * `webhookDeliveryUpdated(projectId)`, and redeliver for those who may manage webhooks; the
 * project's cron triggers with their next run and last fires, missed ones said, read again
 * whenever one of the project's executions or deliveries changes.
 */
import { useEffect, useState } from "react";

import { Graph, GraphRefused } from "./graph";
import { Refusal, Status, When, asRefused, upserted, useThrottled } from "./parts";
import { useQuery, useSubscription } from "./use-graph";

const DELIVERY = `id webhookId type state reason attemptCount maxAttempts nextAttemptAt createdAt endedAt
  attempts { attempt outcome at statusCode latencyMs responseBody error }`;
const CRON = `id name active cron timezone nextRunAt missedPolicy
  fires(first: 5) { nodes { id scheduledAt firedAt status latenessMs reason } }`;
const PAGE = `query HooksPage($p: ID!) { project(id: $p) { id name permissions
  webhooks(first: 100) { nodes { id name url active disabledReason } }
  webhookDeliveries(first: 50) { nodes { ${DELIVERY} } }
  cronTriggers(first: 100) { nodes { ${CRON} } } } }`;
const CRONS = `query Crons($p: ID!) { project(id: $p) { cronTriggers(first: 100) { nodes { ${CRON} } } } }`;
const DELIVERIES = `subscription Deliveries($p: ID!) { webhookDeliveryUpdated(projectId: $p) { ${DELIVERY} } }`;
const EXECUTIONS = `subscription CronExecutions($p: ID!) { executionUpdated(projectId: $p) { id } }`;
const REDELIVER = `mutation Redeliver($id: ID!) { redeliver(deliveryId: $id) { id } }`;

type Attempt = {
  attempt: number;
  outcome: string;
  at: string;
  statusCode: number | null;
  latencyMs: number | null;
  responseBody: string | null;
  error: string | null;
};
type Delivery = {
  id: string;
  webhookId: string;
  type: string;
  state: string;
  reason: string | null;
  attemptCount: number;
  maxAttempts: number;
  nextAttemptAt: string | null;
  createdAt: string;
  endedAt: string | null;
  attempts: Attempt[];
};
type Fire = { id: string; scheduledAt: string; firedAt: string | null; status: string; latenessMs: number; reason: string | null };
type Cron = {
  id: string;
  name: string;
  active: boolean;
  cron: string;
  timezone: string;
  nextRunAt: string | null;
  missedPolicy: string;
  fires: { nodes: Fire[] };
};
type Page = {
  project: {
    name: string;
    permissions: string[];
    webhooks: { nodes: { id: string; name: string; url: string; active: boolean; disabledReason: string | null }[] };
    webhookDeliveries: { nodes: Delivery[] };
    cronTriggers: { nodes: Cron[] };
  };
};

export function Hooks({ graph, projectId }: { graph: Graph; projectId: string }) {
  const page = useQuery<Page>(graph, PAGE, { p: projectId });
  const [deliveries, setDeliveries] = useState<Delivery[]>([]);
  const [crons, setCrons] = useState<Cron[]>([]);
  const [chosen, setChosen] = useState<string | null>(null);
  const [refused, setRefused] = useState<GraphRefused | null>(null);
  useEffect(() => {
    if (page.data) {
      setDeliveries(page.data.project.webhookDeliveries.nodes);
      setCrons(page.data.project.cronTriggers.nodes);
    }
  }, [page.data]);
  const rereadCrons = useThrottled(() => {
    graph
      .request<{ project: { cronTriggers: { nodes: Cron[] } } }>(CRONS, { p: projectId })
      .then((found) => setCrons(found.project.cronTriggers.nodes))
      .catch(() => undefined);
  }, 1000);
  const live = useSubscription<{ webhookDeliveryUpdated: Delivery }>(graph, DELIVERIES, { p: projectId }, (batch) => {
    setDeliveries((shown) => upserted(shown, batch.map((message) => message.webhookDeliveryUpdated), 50));
    rereadCrons();
  });
  useSubscription<{ executionUpdated: { id: string } }>(graph, EXECUTIONS, { p: projectId }, rereadCrons);
  if (page.error) return <Refusal error={page.error} />;
  if (!page.data) return <p className="loading">Loading webhooks…</p>;
  const project = page.data.project;
  const names = new Map(project.webhooks.nodes.map((webhook) => [webhook.id, webhook.name]));
  const canManage = project.permissions.includes("MANAGE_WEBHOOKS");
  const detail = deliveries.find((delivery) => delivery.id === chosen);
  const redeliver = async (id: string) => {
    setRefused(null);
    try {
      await graph.request(REDELIVER, { id });
    } catch (error) {
      setRefused(asRefused(error));
    }
  };
  return (
    <main className="hooks">
      <h1>Webhooks and cron · {project.name}</h1>
      <Refusal error={live} prefix="Live updates stopped: " />
      <Refusal error={refused} />
      <div className="split">
        <section aria-label="Deliveries">
          <h2>Deliveries</h2>
          <table className="rows">
            <thead>
              <tr>
                <th scope="col">Webhook</th>
                <th scope="col">Type</th>
                <th scope="col">State</th>
                <th scope="col">Attempts</th>
                <th scope="col">Last answer</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {deliveries.map((delivery) => {
                const last = delivery.attempts[delivery.attempts.length - 1];
                return (
                  <tr key={delivery.id} data-delivery={delivery.id} className={delivery.id === chosen ? "chosen" : undefined}>
                    <td>
                      <button type="button" className="link" onClick={() => setChosen(delivery.id)}>
                        {names.get(delivery.webhookId) ?? delivery.webhookId}
                      </button>
                    </td>
                    <td>{delivery.type}</td>
                    <td data-state>
                      <Status value={delivery.state} />
                    </td>
                    <td data-attempts>
                      {delivery.attemptCount}/{delivery.maxAttempts}
                    </td>
                    <td>
                      {last ? `${last.statusCode ?? last.outcome}${last.latencyMs !== null ? ` in ${Math.round(last.latencyMs)} ms` : ""}` : "—"}
                    </td>
                    <td>
                      <When at={delivery.createdAt} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {deliveries.length === 0 && <p className="empty">No delivery yet.</p>}
        </section>
        {detail && (
          <aside className="detail" aria-label={`Delivery ${detail.id}`}>
            <h2>
              {detail.type} <Status value={detail.state} />
            </h2>
            {detail.reason && <p className="error">{detail.reason}</p>}
            {detail.state === "pending" && detail.nextAttemptAt && (
              <p>
                Next attempt at <When at={detail.nextAttemptAt} />
              </p>
            )}
            {canManage && (
              <button type="button" onClick={() => void redeliver(detail.id)}>
                Redeliver
              </button>
            )}
            <h3>Attempts</h3>
            <ol className="attempts">
              {detail.attempts.map((attempt, index) => (
                <li key={index}>
                  <When at={attempt.at} /> <b>{attempt.outcome}</b> {attempt.statusCode ?? ""}{" "}
                  {attempt.latencyMs !== null && `${Math.round(attempt.latencyMs)} ms`} {attempt.error}
                  {attempt.responseBody && <pre>{attempt.responseBody.slice(0, 400)}</pre>}
                </li>
              ))}
            </ol>
          </aside>
        )}
      </div>
      <section aria-label="Cron triggers">
        <h2>Cron triggers</h2>
        <table className="rows">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Schedule</th>
              <th scope="col">Next run</th>
              <th scope="col">Last fires</th>
            </tr>
          </thead>
          <tbody>
            {crons.map((cron) => (
              <tr key={cron.id} data-cron={cron.id}>
                <td>
                  {cron.name}
                  {!cron.active && " (inactive)"}
                </td>
                <td>
                  <code>{cron.cron}</code> {cron.timezone}
                </td>
                <td>
                  <When at={cron.nextRunAt} />
                </td>
                <td>
                  {cron.fires.nodes.map((fire) => (
                    <span key={fire.id} className={`fire ${fire.status}`} title={fire.reason ?? undefined}>
                      <When at={fire.scheduledAt} /> {fire.status}
                      {fire.status === "fired" && ` (+${fire.latenessMs} ms)`}{" "}
                    </span>
                  ))}
                  {cron.fires.nodes.length === 0 && "—"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {crons.length === 0 && <p className="empty">No cron trigger.</p>}
      </section>
    </main>
  );
}

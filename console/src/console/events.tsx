/**
 * The events and triggers page: the project's live event feed (`events(projectId)`), an event's
 * before/after and the executions it made, and the project's triggers with their fire counts
 * and last fire (read again as events arrive). Callers who may manage triggers create and edit
 * them here, checking the DQL filter with `testTrigger` against a sample document first.
 */
import { useEffect, useState, type FormEvent } from "react";

import { Graph, GraphRefused } from "./graph";
import { Json, Refusal, Status, When, asRefused, upserted, useThrottled } from "./parts";
import { useQuery, useSubscription } from "./use-graph";

const EVENT = "id resource resourceId action time triggerIds";
const TRIGGER = `id name active resource actions filter firedCount lastFiredAt
  operation { type serviceId functionName webhookId input }`;
const PAGE = `query EventsPage($p: ID!) { project(id: $p) { id name permissions
  events(first: 30) { nodes { ${EVENT} } }
  triggers(first: 100) { nodes { ${TRIGGER} } }
  services(first: 100) { nodes { id name functions } } } }`;
const TRIGGERS = `query Triggers($p: ID!) { project(id: $p) { triggers(first: 100) { nodes { ${TRIGGER} } } } }`;
const FEED = `subscription EventFeed($p: ID!) { events(projectId: $p) { ${EVENT} } }`;
const EVENT_DETAIL = `query Event($id: ID!) { event(id: $id) { ${EVENT} before after
  executions { id function status } } }`;
const TEST = `query TestTrigger($definition: TriggerDefinitionInput!, $document: JSON!) {
  testTrigger(definition: $definition, document: $document) { matches } }`;
const CREATE = `mutation CreateTrigger($p: ID!, $input: TriggerInput!) { createTrigger(projectId: $p, input: $input) { id } }`;
const UPDATE = `mutation UpdateTrigger($id: ID!, $input: TriggerChangesInput!) { updateTrigger(id: $id, input: $input) { id } }`;

const RESOURCES = ["Item", "Annotation", "Dataset", "Execution", "Deployment", "PredictedAsset", "DatasetVersion"];
const ACTIONS = ["Created", "Updated", "Deleted", "StatusChanged"];

type Event = { id: string; resource: string; resourceId: string; action: string; time: string; triggerIds: string[] };
type Trigger = {
  id: string;
  name: string;
  active: boolean;
  resource: string;
  actions: string[];
  filter: unknown;
  firedCount: number;
  lastFiredAt: string | null;
  operation: { type: string; serviceId: string | null; functionName: string | null; webhookId: string | null; input: unknown };
};
type Service = { id: string; name: string; functions: string[] };
type Page = {
  project: {
    name: string;
    permissions: string[];
    events: { nodes: Event[] };
    triggers: { nodes: Trigger[] };
    services: { nodes: Service[] };
  };
};

export function Events({ graph, projectId }: { graph: Graph; projectId: string }) {
  const page = useQuery<Page>(graph, PAGE, { p: projectId });
  const [events, setEvents] = useState<Event[]>([]);
  const [triggers, setTriggers] = useState<Trigger[]>([]);
  const [chosen, setChosen] = useState<string | null>(null);
  const [editing, setEditing] = useState<Trigger | "new" | null>(null);
  useEffect(() => {
    if (page.data) {
      setEvents(page.data.project.events.nodes);
      setTriggers(page.data.project.triggers.nodes);
    }
  }, [page.data]);
  const rereadTriggers = useThrottled(() => {
    graph
      .request<{ project: { triggers: { nodes: Trigger[] } } }>(TRIGGERS, { p: projectId })
      .then((found) => setTriggers(found.project.triggers.nodes))
      .catch(() => undefined);
  }, 500);
  const live = useSubscription<{ events: Event }>(graph, FEED, { p: projectId }, (batch) => {
    setEvents((shown) => upserted(shown, batch.map((message) => message.events), 100));
    if (batch.some((message) => message.events.triggerIds.length)) rereadTriggers();
  });
  if (page.error) return <Refusal error={page.error} />;
  if (!page.data) return <p className="loading">Loading events…</p>;
  const project = page.data.project;
  const canManage = project.permissions.includes("MANAGE_TRIGGERS");
  return (
    <main className="events">
      <h1>Events and triggers · {project.name}</h1>
      <Refusal error={live} prefix="Live updates stopped: " />
      <div className="split">
        <section aria-label="Event feed" className="feed">
          <h2>Live events</h2>
          <ol className="feed-list">
            {events.map((event) => (
              <li key={event.id} data-event={event.id} data-resource={event.resourceId}>
                <button type="button" className="link" onClick={() => setChosen(event.id)}>
                  {event.resource} {event.action}
                </button>{" "}
                <When at={event.time} /> {event.triggerIds.length > 0 && <span>fired {event.triggerIds.length}</span>}
              </li>
            ))}
          </ol>
          {events.length === 0 && <p className="empty">No event yet: change something in the project.</p>}
        </section>
        {chosen && <EventDetail key={chosen} graph={graph} id={chosen} />}
        <section aria-label="Triggers" className="triggers">
          <h2>Triggers</h2>
          {canManage && (
            <button type="button" onClick={() => setEditing("new")}>
              New trigger
            </button>
          )}
          <table className="rows">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">On</th>
                <th scope="col">Fired</th>
                <th scope="col">Last fired</th>
              </tr>
            </thead>
            <tbody>
              {triggers.map((trigger) => (
                <tr key={trigger.id} data-trigger={trigger.id}>
                  <td>
                    {canManage ? (
                      <button type="button" className="link" onClick={() => setEditing(trigger)}>
                        {trigger.name}
                      </button>
                    ) : (
                      trigger.name
                    )}
                    {!trigger.active && " (inactive)"}
                  </td>
                  <td>
                    {trigger.resource} {trigger.actions.join(", ")}
                  </td>
                  <td data-fired>{trigger.firedCount}</td>
                  <td>
                    <When at={trigger.lastFiredAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      </div>
      {editing && (
        <TriggerEditor
          graph={graph}
          projectId={projectId}
          services={project.services.nodes}
          trigger={editing === "new" ? null : editing}
          onDone={() => {
            setEditing(null);
            rereadTriggers();
          }}
        />
      )}
    </main>
  );
}

function EventDetail({ graph, id }: { graph: Graph; id: string }) {
  const found = useQuery<{ event: Event & { before: unknown; after: unknown; executions: { id: string; function: string; status: string }[] } }>(
    graph,
    EVENT_DETAIL,
    { id },
  );
  if (found.error) return <Refusal error={found.error} />;
  if (!found.data) return <aside className="detail">Loading…</aside>;
  const event = found.data.event;
  return (
    <aside className="detail" aria-label={`Event ${event.id}`}>
      <h2>
        {event.resource} {event.action}
      </h2>
      <h3>Executions</h3>
      <ul>
        {event.executions.map((execution) => (
          <li key={execution.id}>
            {execution.function} <Status value={execution.status} />
          </li>
        ))}
      </ul>
      {event.executions.length === 0 && <p>None.</p>}
      <h3>Before</h3>
      <Json value={event.before} />
      <h3>After</h3>
      <Json value={event.after} />
    </aside>
  );
}

function parsed(text: string, what: string): unknown {
  if (!text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new GraphRefused([{ message: `${what} is not JSON: ${String(error)}` }]);
  }
}

function TriggerEditor({
  graph,
  projectId,
  services,
  trigger,
  onDone,
}: {
  graph: Graph;
  projectId: string;
  services: Service[];
  trigger: Trigger | null;
  onDone: () => void;
}) {
  const [name, setName] = useState(trigger?.name ?? "");
  const [resource, setResource] = useState(trigger?.resource ?? "Item");
  const [actions, setActions] = useState<string[]>(trigger?.actions ?? ["Created"]);
  const [filter, setFilter] = useState(trigger?.filter ? JSON.stringify(trigger.filter, null, 2) : "");
  const [serviceId, setServiceId] = useState(trigger?.operation.serviceId ?? services[0]?.id ?? "");
  const [functionName, setFunctionName] = useState(trigger?.operation.functionName ?? services[0]?.functions[0] ?? "");
  const [sample, setSample] = useState("");
  const [tested, setTested] = useState<boolean | null>(null);
  const [error, setError] = useState<GraphRefused | null>(null);

  const definition = () => ({ resource, actions, filter: parsed(filter, "The filter") });
  const test = async () => {
    setError(null);
    try {
      const document = parsed(sample, "The sample document") ?? {};
      const found = await graph.request<{ testTrigger: { matches: boolean } }>(TEST, { definition: definition(), document });
      setTested(found.testTrigger.matches);
    } catch (refused) {
      setTested(null);
      setError(asRefused(refused));
    }
  };
  const save = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    try {
      const operation = { serviceId, functionName };
      if (trigger) {
        await graph.request(UPDATE, { id: trigger.id, input: { name, actions, filter: parsed(filter, "The filter"), operation } });
      } else {
        await graph.request(CREATE, { p: projectId, input: { name, ...definition(), operation } });
      }
      onDone();
    } catch (refused) {
      setError(asRefused(refused));
    }
  };
  const functions = services.find((service) => service.id === serviceId)?.functions ?? [];
  return (
    <form className="editor" aria-label={trigger ? `Edit trigger ${trigger.name}` : "New trigger"} onSubmit={save}>
      <h2>{trigger ? `Edit ${trigger.name}` : "New trigger"}</h2>
      <label>
        Name
        <input value={name} onChange={(event) => setName(event.target.value)} required />
      </label>
      <label>
        Resource
        <select value={resource} disabled={trigger !== null} onChange={(event) => setResource(event.target.value)}>
          {RESOURCES.map((option) => (
            <option key={option}>{option}</option>
          ))}
        </select>
      </label>
      <fieldset>
        <legend>Actions</legend>
        {ACTIONS.map((action) => (
          <label key={action} className="inline">
            <input
              type="checkbox"
              checked={actions.includes(action)}
              onChange={(event) =>
                setActions(event.target.checked ? [...actions, action] : actions.filter((kept) => kept !== action))
              }
            />
            {action}
          </label>
        ))}
      </fieldset>
      <label>
        DQL filter (JSON)
        <textarea rows={4} value={filter} onChange={(event) => setFilter(event.target.value)} />
      </label>
      <label>
        Service
        <select value={serviceId} onChange={(event) => setServiceId(event.target.value)}>
          {services.map((service) => (
            <option key={service.id} value={service.id}>
              {service.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Function
        <select value={functionName} onChange={(event) => setFunctionName(event.target.value)}>
          {functions.map((fn) => (
            <option key={fn}>{fn}</option>
          ))}
        </select>
      </label>
      <label>
        Sample document (JSON)
        <textarea rows={4} value={sample} onChange={(event) => setSample(event.target.value)} />
      </label>
      <div className="actions">
        <button type="button" onClick={() => void test()}>
          Test the filter
        </button>
        <button type="submit">Save</button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
      {tested !== null && (
        <p role="status" data-tested>
          {tested ? "The sample matches: this trigger would fire." : "The sample does not match: no fire."}
        </p>
      )}
      <Refusal error={error} />
    </form>
  );
}

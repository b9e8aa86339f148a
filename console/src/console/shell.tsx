/**
 * The frame around every page: who is signed in, the projects they can see, the pages of the
 * chosen project, and whether live updates are flowing (said, not hidden, when the socket is
 * down and graphql-ws is reconnecting).
 */
import { useEffect, useState } from "react";

import { Commands } from "./commands";
import { Datasets } from "./datasets";
import { Deployments } from "./deployments";
import { Events } from "./events";
import { Executions } from "./executions";
import { type Connection, Graph } from "./graph";
import { Hooks } from "./hooks";
import { Models } from "./models";
import { go, href, PAGES, type Route, useRoute } from "./routes";
import { useQuery } from "./use-graph";

const PROJECTS = `query Projects {
  me { email }
  organizations(first: 50) { nodes { id name role projects(first: 100) { nodes { id name } } } }
}`;

type Projects = {
  me: { email: string };
  organizations: {
    nodes: { id: string; name: string; role: string; projects: { nodes: { id: string; name: string }[] } }[];
  };
};

function useConnection(graph: Graph): Connection {
  const [state, setState] = useState<Connection>(graph.state);
  useEffect(() => graph.onConnection(setState), [graph]);
  return state;
}

export function Shell({ graph, onSignOut }: { graph: Graph; onSignOut: () => void }) {
  const route = useRoute();
  const projects = useQuery<Projects>(graph, PROJECTS, {});
  const connection = useConnection(graph);
  const all = projects.data?.organizations.nodes.flatMap((org) =>
    org.projects.nodes.map((project) => ({ ...project, org: org.name })),
  );
  const firstProject = all?.[0]?.id ?? null;
  useEffect(() => {
    if (route.projectId === null && firstProject !== null) go({ projectId: firstProject, page: route.page });
  }, [route.projectId, route.page, firstProject]);

  return (
    <div className="shell">
      <header>
        <strong>Loom</strong>
        <nav aria-label="Projects">
          <label htmlFor="project">Project</label>
          <select
            id="project"
            value={route.projectId ?? ""}
            onChange={(event) => go({ projectId: event.target.value, page: route.page })}
          >
            {route.projectId && !all?.some((p) => p.id === route.projectId) && (
              <option value={route.projectId}>{route.projectId}</option>
            )}
            {all?.map((project) => (
              <option key={project.id} value={project.id}>
                {project.org} / {project.name}
              </option>
            ))}
          </select>
        </nav>
        <span className={`connection ${connection}`} role="status">
          {connection === "connected" ? "Live" : connection === "connecting" ? "Connecting…" : "Connection lost: reconnecting…"}
        </span>
        <span className="who">{projects.data?.me.email}</span>
        <button type="button" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      {projects.error && (
        <p role="alert" className="error">
          {projects.error.message}
        </p>
      )}
      {projects.data && all?.length === 0 && <p className="empty">You can see no project yet.</p>}
      {route.projectId && (
        <nav className="pages" aria-label="Pages">
          {PAGES.map(({ page, title }) => (
            <a
              key={page}
              href={href({ projectId: route.projectId, page })}
              aria-current={route.page === page ? "page" : undefined}
              onClick={(event) => {
                event.preventDefault();
                go({ projectId: route.projectId, page });
              }}
            >
              {title}
            </a>
          ))}
        </nav>
      )}
      {route.projectId && <Page key={`${route.projectId}/${route.page}`} graph={graph} route={route} />}
    </div>
  );
}

function Page({ graph, route }: { graph: Graph; route: Route }) {
  const projectId = route.projectId!;
  switch (route.page) {
    case "events":
      return <Events graph={graph} projectId={projectId} />;
    case "hooks":
      return <Hooks graph={graph} projectId={projectId} />;
    case "commands":
      return <Commands graph={graph} projectId={projectId} />;
    case "datasets":
      return <Datasets graph={graph} projectId={projectId} />;
    case "models":
      return <Models graph={graph} projectId={projectId} />;
    case "deployments":
      return <Deployments graph={graph} projectId={projectId} />;
    default:
      return <Executions graph={graph} projectId={projectId} />;
  }
}

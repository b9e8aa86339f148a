/**
 * Where the console is: its pages are addresses under /console/ (so a reload or a shared
 * link opens the same page; the gateway serves index.html for all of them), moved between
 * with the History API.
 */
import { useEffect, useState } from "react";

export type Route = { projectId: string | null; page: string };

export const PAGES = [
  { page: "executions", title: "Executions" },
  { page: "events", title: "Events and triggers" },
  { page: "hooks", title: "Webhooks and cron" },
  { page: "commands", title: "Commands" },
  { page: "datasets", title: "Datasets" },
  { page: "models", title: "Model runs" },
  { page: "deployments", title: "Deployments" },
] as const;

export function parse(pathname: string): Route {
  const parts = pathname.replace(/^\/console\/?/, "").split("/").filter(Boolean);
  if (parts[0] === "projects" && parts[1]) {
    return { projectId: parts[1], page: parts[2] ?? "executions" };
  }
  return { projectId: null, page: "executions" };
}

export function href(route: Route): string {
  return route.projectId ? `/console/projects/${route.projectId}/${route.page}` : "/console/";
}

export function go(route: Route): void {
  history.pushState(null, "", href(route));
  dispatchEvent(new PopStateEvent("popstate"));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.pathname));
  useEffect(() => {
    const moved = () => setRoute(parse(location.pathname));
    addEventListener("popstate", moved);
    return () => removeEventListener("popstate", moved);
  }, []);
  return route;
}

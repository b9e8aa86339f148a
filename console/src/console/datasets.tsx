/**
 * The datasets page: a dataset's items as a thumbnail grid, each image drawn on a canvas with
 * its boxes and polygons in their labels' colours, narrowed by a DQL filter and paged by
 * cursor. Images are fetched with the signed-in key (an item's download needs it) and shown
 * from blob URLs; the page reads itself again when the project's items or annotations change.
 */
import { useEffect, useRef, useState, type FormEvent } from "react";

import { Graph, GraphRefused } from "./graph";
import { Refusal, useThrottled } from "./parts";
import { useQuery, useSubscription } from "./use-graph";

const PER_PAGE = 24;
const DATASETS = `query Datasets($p: ID!) { project(id: $p) { id name
  datasets(first: 100) { nodes { id name itemsCount } } } }`;
const ITEMS = `query Items($d: ID!, $filter: JSON, $first: Int!, $after: String) { dataset(id: $d) {
  id name labels { name color children { name color children { name color } } }
  items(filter: $filter, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    nodes { id name width height downloadUrl annotations { id type label coordinates } } } } }`;
const CHANGES = `subscription DataChanges($p: ID!) { events(projectId: $p, resources: [Item, Annotation]) { id } }`;

type Label = { name: string; color: string; children?: Label[] };
type Annotation = { id: string; type: string; label: string; coordinates: unknown };
type Item = { id: string; name: string; width: number | null; height: number | null; downloadUrl: string; annotations: Annotation[] };
type Items = {
  dataset: {
    name: string;
    labels: Label[];
    items: { totalCount: number; pageInfo: { hasNextPage: boolean; endCursor: string | null }; nodes: Item[] };
  };
};

function colours(labels: Label[], prefix = "", into = new Map<string, string>()): Map<string, string> {
  for (const label of labels) {
    const path = prefix ? `${prefix}.${label.name}` : label.name;
    into.set(path, label.color);
    colours(label.children ?? [], path, into);
  }
  return into;
}

export function Datasets({ graph, projectId }: { graph: Graph; projectId: string }) {
  const list = useQuery<{ project: { name: string; datasets: { nodes: { id: string; name: string; itemsCount: number }[] } } }>(
    graph,
    DATASETS,
    { p: projectId },
  );
  const [datasetId, setDatasetId] = useState<string | null>(null);
  useEffect(() => {
    if (list.data && datasetId === null) setDatasetId(list.data.project.datasets.nodes[0]?.id ?? null);
  }, [list.data, datasetId]);
  if (list.error) return <Refusal error={list.error} />;
  if (!list.data) return <p className="loading">Loading datasets…</p>;
  return (
    <main className="datasets">
      <h1>Datasets · {list.data.project.name}</h1>
      <label>
        Dataset{" "}
        <select value={datasetId ?? ""} onChange={(event) => setDatasetId(event.target.value)}>
          {list.data.project.datasets.nodes.map((dataset) => (
            <option key={dataset.id} value={dataset.id}>
              {dataset.name} ({dataset.itemsCount})
            </option>
          ))}
        </select>
      </label>
      {datasetId && <Grid key={datasetId} graph={graph} projectId={projectId} datasetId={datasetId} />}
      {list.data.project.datasets.nodes.length === 0 && <p className="empty">No dataset.</p>}
    </main>
  );
}

function Grid({ graph, projectId, datasetId }: { graph: Graph; projectId: string; datasetId: string }) {
  const [filterText, setFilterText] = useState("");
  const [filter, setFilter] = useState<unknown>(null);
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [filterError, setFilterError] = useState<GraphRefused | null>(null);
  const after = cursors[cursors.length - 1];
  const items = useQuery<Items>(graph, ITEMS, { d: datasetId, filter, first: PER_PAGE, after });
  const reread = useThrottled(items.refetch, 1000);
  useSubscription(graph, CHANGES, { p: projectId }, reread);
  const apply = (event: FormEvent) => {
    event.preventDefault();
    try {
      setFilter(filterText.trim() ? JSON.parse(filterText) : null);
      setFilterError(null);
      setCursors([null]);
    } catch (error) {
      setFilterError(new GraphRefused([{ message: `The filter is not JSON: ${String(error)}` }]));
    }
  };
  const page = items.data?.dataset.items;
  const palette = items.data ? colours(items.data.dataset.labels) : new Map<string, string>();
  return (
    <>
      <form className="filters" aria-label="Filter items" onSubmit={apply}>
        <label>
          DQL filter
          <input
            value={filterText}
            placeholder='{"dir": "/train"}'
            onChange={(event) => setFilterText(event.target.value)}
            size={40}
          />
        </label>
        <button type="submit">Apply</button>
      </form>
      <Refusal error={filterError ?? items.error} />
      {page && (
        <>
          <p>
            {page.totalCount} items · page {cursors.length}
          </p>
          <ul className="grid" aria-label="Items">
            {page.nodes.map((item) => (
              <li key={item.id} data-item={item.id}>
                <Thumbnail graph={graph} item={item} palette={palette} />
                <span className="name">{item.name}</span>
              </li>
            ))}
          </ul>
          <nav className="pager" aria-label="Pages">
            <button type="button" disabled={cursors.length === 1} onClick={() => setCursors(cursors.slice(0, -1))}>
              Previous
            </button>
            <button
              type="button"
              disabled={!page.pageInfo.hasNextPage}
              onClick={() => setCursors([...cursors, page.pageInfo.endCursor])}
            >
              Next
            </button>
          </nav>
        </>
      )}
    </>
  );
}

const SIDE = 180;

function Thumbnail({ graph, item, palette }: { graph: Graph; item: Item; palette: Map<string, string> }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [image, setImage] = useState<HTMLImageElement | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let url: string | null = null;
    let current = true;
    graph
      .fetchFile(item.downloadUrl)
      .then((blob) => {
        if (!current) return;
        url = URL.createObjectURL(blob);
        const loaded = new Image();
        loaded.onload = () => current && setImage(loaded);
        loaded.onerror = () => current && setFailed(true);
        loaded.src = url;
      })
      .catch(() => current && setFailed(true));
    return () => {
      current = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [graph, item.downloadUrl]);
  useEffect(() => {
    const context = canvas.current?.getContext("2d");
    if (!context || !image) return;
    const width = item.width ?? image.naturalWidth;
    const height = item.height ?? image.naturalHeight;
    const scale = Math.min(SIDE / width, SIDE / height);
    context.canvas.width = Math.round(width * scale);
    context.canvas.height = Math.round(height * scale);
    context.drawImage(image, 0, 0, context.canvas.width, context.canvas.height);
    context.lineWidth = 2;
    for (const annotation of item.annotations) {
      context.strokeStyle = palette.get(annotation.label) ?? "#ffcc00";
      if (annotation.type === "BOX") {
        const box = annotation.coordinates as { left: number; top: number; right: number; bottom: number };
        context.strokeRect(box.left * scale, box.top * scale, (box.right - box.left) * scale, (box.bottom - box.top) * scale);
      } else if (annotation.type === "POLYGON") {
        const points = annotation.coordinates as { x: number; y: number }[];
        context.beginPath();
        points.forEach((point, index) =>
          index ? context.lineTo(point.x * scale, point.y * scale) : context.moveTo(point.x * scale, point.y * scale),
        );
        context.closePath();
        context.stroke();
      }
    }
  }, [image, item, palette]);
  const drawn = item.annotations.filter((annotation) => annotation.type === "BOX" || annotation.type === "POLYGON");
  return (
    <canvas
      ref={canvas}
      width={SIDE}
      height={SIDE}
      role="img"
      data-drawn={image ? drawn.length : undefined}
      aria-label={`${item.name}: ${failed ? "the image could not be read" : `${drawn.length} shapes drawn`}`}
    />
  );
}

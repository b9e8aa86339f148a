/** A uPlot chart as a React component: series drawn on a canvas, redrawn when data changes. */
import "uplot/dist/uPlot.min.css";

import { useEffect, useRef } from "react";
import uPlot from "uplot";

export type Series = { label: string; stroke: string };

export function Chart({
  title,
  x,
  series,
  data,
  time = false,
  width = 420,
  height = 220,
}: {
  title: string;
  x: string;
  series: Series[];
  data: (number | null)[][];
  time?: boolean;
  width?: number;
  height?: number;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = JSON.stringify([title, x, series, time, width, height]);
  useEffect(() => {
    if (!box.current) return;
    const options: uPlot.Options = {
      title,
      width,
      height,
      scales: { x: { time } },
      axes: [{ label: x }, {}],
      series: [{ label: x }, ...series.map((one) => ({ label: one.label, stroke: one.stroke, width: 2 }))],
    };
    plot.current = new uPlot(options, data as uPlot.AlignedData, box.current);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
    // Rebuilt only when its shape changes (`shape` covers the rest); new data goes through
    // setData below.
  }, [shape]);
  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);
  return <div ref={box} className="chart" role="img" aria-label={title} data-points={data[0]?.length ?? 0} />;
}

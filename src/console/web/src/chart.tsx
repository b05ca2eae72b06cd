/** A line chart in SVG, no library: a few hundred points at most (one per 5 s sample). */
export function Chart(props: {
  title: string;
  points: Array<[number, number]>;
  max: number;
  label: (v: number) => string;
}) {
  const { points, max } = props;
  const w = 480;
  const h = 120;
  const t0 = points[0]?.[0] ?? 0;
  const t1 = points[points.length - 1]?.[0] ?? 1;
  const x = (t: number) => (t1 === t0 ? w : ((t - t0) / (t1 - t0)) * w);
  const y = (v: number) => h - (Math.min(v, max) / (max || 1)) * h;
  const last = points[points.length - 1];
  return (
    <figure class="chart">
      <figcaption>
        {props.title}: <strong>{last ? props.label(last[1]) : '–'}</strong> (max {props.label(max)})
      </figcaption>
      <svg viewBox={`0 0 ${w} ${h}`} preserveAspectRatio="none" role="img" aria-label={props.title}>
        <polyline points={points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ')} />
      </svg>
    </figure>
  );
}

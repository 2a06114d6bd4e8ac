// The desk's time-series charts (recharts 2.x) with their data tables. Charts render only after hydration: recharts
// measures text and mints ids in the browser, so a server-rendered SVG would not match the client's. The table
// (in a <details>, native HTML) is the page's content without JavaScript and for screen readers.
import { useEffect, useRef, useState, type ReactNode, type RefObject } from 'react';
import { Bar, BarChart, CartesianGrid, Legend, Line, LineChart, Tooltip, XAxis, YAxis } from 'recharts';

export function useHydrated(): boolean {
  const [hydrated, setHydrated] = useState(false);
  useEffect(() => setHydrated(true), []);
  return hydrated;
}

const HEIGHT = 260;
/** Width given to an x-axis label (a label like "12-06 18:00" is about 80 px at 12 px). */
const TICK_PX = 64;

// Colours with at least 3:1 contrast on white, told apart by dash pattern too.
export const SERIES_COLORS = ['#1f4f8a', '#1d6b3a', '#a4161a', '#7a4b00', '#5b2a86', '#0f6a73', '#8a1f5a', '#3d4b5c', '#6b5b00'];

export function bucketLabel(iso: string, bucketHours: number): string {
  const d = new Date(iso);
  const time = `${String(d.getUTCHours()).padStart(2, '0')}:00`;
  return bucketHours > 1 ? `${d.toISOString().slice(5, 10)} ${time}` : time;
}

export interface ChartSeries {
  key: string;
  label: string;
}

// The chart takes its container's width (measured, and again when it changes: a phone turned, a sidebar opened), so
// it never overflows a 390 px screen; recharts' fixed width cannot follow the page on its own.
function useContainerWidth(): [RefObject<HTMLDivElement | null>, number] {
  const ref = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(0);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const measure = () => setWidth(Math.floor(el.getBoundingClientRect().width));
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}

function ChartFrame({ label, children, hydrated }: { label: string; children: (width: number) => ReactNode; hydrated: boolean }) {
  const [ref, width] = useContainerWidth();
  return (
    <div ref={ref} className="desk-chart" style={{ minHeight: HEIGHT, width: '100%', maxWidth: '100%', minWidth: 0 }} data-chart={hydrated && width > 0 ? 'ready' : 'pending'}>
      {hydrated ? (
        <figure role="img" aria-label={label} style={{ margin: 0, width: '100%' }}>
          {width > 0 ? children(width) : null}
        </figure>
      ) : (
        <p className="muted">The chart appears when JavaScript runs; the table below has the same numbers.</p>
      )}
    </div>
  );
}

/** Every nth x-axis label, so the labels that fit at this width are drawn and none overlap. */
export function tickInterval(points: number, width: number, bucketHours: number): number {
  const slots = Math.max(2, Math.floor(width / (bucketHours > 1 ? TICK_PX * 1.4 : TICK_PX)));
  return Math.max(0, Math.ceil(points / slots) - 1);
}

export function TimeSeriesChart(props: {
  kind: 'line' | 'bar';
  label: string;
  data: Array<Record<string, string | number>>;
  series: ChartSeries[];
  bucketHours: number;
  stacked?: boolean;
}) {
  const hydrated = useHydrated();
  const data = props.data.map((p) => ({ ...p, label: bucketLabel(String(p.bucketStart), props.bucketHours) }));
  // An array, not a fragment: recharts 2 finds its axes among direct children, and with React 19 it does not
  // see into fragments.
  const axes = (width: number) => [
    <CartesianGrid key="grid" strokeDasharray="3 3" stroke="#d9dee5" />,
    <XAxis key="x" dataKey="label" tick={{ fill: '#4d5b6b', fontSize: 12 }} interval={tickInterval(data.length, width, props.bucketHours)} />,
    <YAxis key="y" allowDecimals={false} tick={{ fill: '#4d5b6b', fontSize: 12 }} width={width < 480 ? 40 : 56} />,
    <Tooltip key="tooltip" isAnimationActive={false} wrapperStyle={{ maxWidth: Math.min(320, width), whiteSpace: 'normal' }} />,
    // The legend is HTML laid out within the chart's width: its items wrap onto more lines on a narrow screen.
    <Legend key="legend" wrapperStyle={{ width: width - 16, lineHeight: '1.6' }} />,
  ];
  // More legend lines when narrow: each series' label is up to ~40 characters.
  const height = (width: number) => HEIGHT + Math.max(0, Math.ceil((props.series.length * 200) / Math.max(width, 1)) - 1) * 20;
  const margin = { top: 8, right: 8, bottom: 8, left: 0 };
  return (
    <ChartFrame label={props.label} hydrated={hydrated}>
      {(width) => props.kind === 'line' ? (
        <LineChart width={width} height={height(width)} data={data} margin={margin}>
          {axes(width)}
          {props.series.map((s, i) => (
            <Line
              key={s.key}
              type="linear"
              dataKey={s.key}
              name={s.label}
              stroke={SERIES_COLORS[i % SERIES_COLORS.length]}
              strokeDasharray={i === 0 ? undefined : i === 1 ? '6 3' : '2 2'}
              strokeWidth={2}
              dot={false}
              isAnimationActive={false}
            />
          ))}
        </LineChart>
      ) : (
        <BarChart width={width} height={height(width)} data={data} margin={margin}>
          {axes(width)}
          {props.series.map((s, i) => (
            <Bar
              key={s.key}
              dataKey={s.key}
              name={s.label}
              fill={SERIES_COLORS[i % SERIES_COLORS.length]}
              stackId={props.stacked ? 'all' : undefined}
              isAnimationActive={false}
            />
          ))}
        </BarChart>
      )}
    </ChartFrame>
  );
}

/** The chart's numbers as a table, collapsed by default (open it without JavaScript: it is a plain <details>). */
export function SeriesTable(props: {
  caption: string;
  data: Array<Record<string, string | number>>;
  series: ChartSeries[];
  bucketHours: number;
  open?: boolean;
}) {
  return (
    <details open={props.open}>
      <summary>{props.caption}: the numbers</summary>
      <div className="table-scroll" role="region" aria-label={props.caption} tabIndex={0}>
        <table className="data-table">
          <caption className="visually-hidden">{props.caption}</caption>
          <thead>
            <tr>
              <th scope="col">From (UTC)</th>
              {props.series.map((s) => (
                <th key={s.key} scope="col" className="numeric">
                  {s.label}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {props.data.map((p) => (
              <tr key={String(p.bucketStart)}>
                <th scope="row">{bucketLabel(String(p.bucketStart), props.bucketHours)}</th>
                {props.series.map((s) => (
                  <td key={s.key} className="numeric">
                    {Number(p[s.key] ?? 0).toLocaleString('en-US')}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </details>
  );
}

// A history chart drawn as SVG by hand: per bucket the min–max band and the mean
// line, with a y axis in the reading's unit and a time axis.
import { num, unitOf, label } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// niceTicks returns about n round values covering [lo, hi].
export function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) { hi = lo + 1; lo -= 1; }
  const raw = (hi - lo) / Math.max(1, n - 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((x) => x >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  if (out[out.length - 1] < hi) out.push(+(out[out.length - 1] + step).toFixed(10));
  return out;
}

const bucketMs = { '1m': 60e3, '5m': 300e3, '15m': 900e3, '1h': 3600e3, '1d': 86400e3 };

function timeLabel(t, bucket) {
  const d = new Date(t);
  if (bucket === '1d') return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  if (bucket === '1h' || bucket === '15m') {
    return d.toLocaleString(undefined, { weekday: 'short', hour: '2-digit', minute: '2-digit' });
  }
  return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

// drawChart renders the buckets of one type into fig (a <figure>), width px wide.
export function drawChart(fig, { type, unit, bucket, from, to, buckets }, width) {
  fig.replaceChildren();
  const u = unitOf(type, unit);
  if (!buckets.length) {
    fig.append(Object.assign(document.createElement('p'), {
      className: 'empty', textContent: `No ${label(type).toLowerCase()} readings in this period.`,
    }));
    return;
  }
  const W = Math.max(280, Math.round(width));
  const H = W < 480 ? 220 : 260;
  const m = { l: 52, r: 14, t: 12, b: 30 };
  const iw = W - m.l - m.r;
  const ih = H - m.t - m.b;
  const t0 = new Date(from).getTime();
  const t1 = new Date(to).getTime();
  const step = bucketMs[bucket] || 300e3;
  let lo = Infinity;
  let hi = -Infinity;
  for (const b of buckets) { lo = Math.min(lo, b.min); hi = Math.max(hi, b.max); }
  const pad = (hi - lo) * 0.08 || Math.max(1, Math.abs(hi) * 0.05);
  const ticks = niceTicks(lo - pad, hi + pad, H < 240 ? 4 : 5);
  const y0 = ticks[0];
  const y1 = ticks[ticks.length - 1];
  const x = (t) => m.l + ((t - t0) / Math.max(1, t1 - t0)) * iw;
  const y = (v) => m.t + ih - ((v - y0) / (y1 - y0)) * ih;
  const mid = (b) => new Date(b.start).getTime() + step / 2;

  const first = buckets[0];
  const last = buckets[buckets.length - 1];
  const desc = `${label(type)} in ${u || 'units'}, ${buckets.length} buckets of ${bucket}: ` +
    `mean from ${num(first.mean, type)} to ${num(last.mean, type)}, lowest ${num(lo, type)}, highest ${num(hi, type)}.`;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': desc });

  const grid = s('g', { class: 'grid' });
  const yAxis = s('g', { class: 'axis' });
  for (const v of ticks) {
    grid.append(s('line', { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
    yAxis.append(s('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, num(v, type)));
  }
  yAxis.append(s('text', { x: 4, y: m.t + 2, 'dominant-baseline': 'hanging' }, u));
  const xAxis = s('g', { class: 'axis' });
  const nx = W < 480 ? 3 : 6;
  for (let i = 0; i <= nx; i++) {
    const t = t0 + ((t1 - t0) * i) / nx;
    const anchor = i === 0 ? 'start' : i === nx ? 'end' : 'middle';
    xAxis.append(s('text', { x: x(t), y: H - 8, 'text-anchor': anchor }, timeLabel(t, bucket)));
    grid.append(s('line', { x1: x(t), x2: x(t), y1: m.t, y2: m.t + ih }));
  }
  svg.append(grid, yAxis, xAxis);

  // Split into runs where buckets follow each other; a gap breaks the line.
  const runs = [];
  let run = [];
  for (const b of buckets) {
    if (run.length && new Date(b.start).getTime() - new Date(run[run.length - 1].start).getTime() > step * 1.5) {
      runs.push(run);
      run = [];
    }
    run.push(b);
  }
  runs.push(run);
  for (const r of runs) {
    const top = r.map((b) => `${x(mid(b)).toFixed(1)},${y(b.max).toFixed(1)}`);
    const bottom = r.slice().reverse().map((b) => `${x(mid(b)).toFixed(1)},${y(b.min).toFixed(1)}`);
    if (r.length > 1) svg.append(s('polygon', { class: 'band', points: top.concat(bottom).join(' ') }));
    const d = r.map((b, i) => `${i ? 'L' : 'M'}${x(mid(b)).toFixed(1)},${y(b.mean).toFixed(1)}`).join('');
    svg.append(s('path', { class: 'mean', d }));
    if (r.length === 1 || buckets.length <= 48) {
      for (const b of r) {
        const c = s('circle', { class: 'pt', cx: x(mid(b)).toFixed(1), cy: y(b.mean).toFixed(1), r: 2.5 });
        c.append(s('title', {}, `${new Date(b.start).toLocaleString()}: mean ${num(b.mean, type)} ${u} (${num(b.min, type)}–${num(b.max, type)}, ${b.count} readings)`));
        svg.append(c);
      }
    }
  }
  fig.append(svg, Object.assign(document.createElement('figcaption'), {
    textContent: `Line: mean per ${bucket} bucket; shaded: min to max.`,
  }));
}

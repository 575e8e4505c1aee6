// Hand-written SVG charts: no library, no network. Each chart is a
// <figure> with a caption, an SVG labelled for screen readers (role img,
// title and description), a legend in text, and the same numbers as a
// table under a disclosure, so nothing depends on seeing colours.

import { h, s, number } from './dom.js';

const W = 640;
const H = 220;
const M = { top: 12, right: 12, bottom: 34, left: 56 };

let uid = 0;

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= v) return f * p;
  return 10 * p;
}

function figure(title, summary, svg, legend, table) {
  return h('figure', { class: 'chart' },
    h('figcaption', {}, title),
    svg,
    legend,
    h('details', {}, h('summary', {}, `${title}: data table`), table));
}

function svgRoot(title, summary, height = H) {
  const id = `chart-${++uid}`;
  return s('svg', {
    viewBox: `0 0 ${W} ${height}`,
    role: 'img',
    'aria-labelledby': `${id}-t ${id}-d`,
    class: 'chart-svg',
    focusable: 'false',
  },
  s('title', { id: `${id}-t` }, title),
  s('desc', { id: `${id}-d` }, summary));
}

function legendOf(series) {
  return h('ul', { class: 'legend' },
    series.map((x) => h('li', {}, h('span', { class: `swatch ${x.cls}`, 'aria-hidden': 'true' }), x.label)));
}

function yAxis(svg, max, fmt, height = H) {
  const inner = height - M.top - M.bottom;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const y = M.top + inner - (inner * i) / 4;
    svg.append(s('line', { x1: M.left, x2: W - M.right, y1: y, y2: y, class: 'grid' }));
    svg.append(s('text', { x: M.left - 6, y: y + 4, class: 'tick', 'text-anchor': 'end' }, fmt(v)));
  }
}

function shortDate(iso, bucket) {
  const d = iso.slice(5, 10);
  return bucket === 'hour' ? `${d} ${iso.slice(11, 13)}h` : d;
}

/**
 * Stacked columns over time. `points`: [{start, <key>: n}], `series`:
 * [{key, label, cls}].
 */
export function stackedColumns(title, points, series, bucket) {
  const totals = points.map((p) => series.reduce((a, x) => a + (p[x.key] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const sum = series.map((x) => `${x.label}: ${number(points.reduce((a, p) => a + (p[x.key] || 0), 0))}`).join(', ');
  const summary = `${points.length} ${bucket}s from ${points[0]?.start ?? ''}; totals ${sum}.`;
  const svg = svgRoot(title, summary);
  yAxis(svg, max, (v) => number(Math.round(v)));
  const inner = { w: W - M.left - M.right, h: H - M.top - M.bottom };
  const step = inner.w / Math.max(points.length, 1);
  const barW = Math.max(1, step * 0.8);
  points.forEach((p, i) => {
    let y = M.top + inner.h;
    const x = M.left + i * step + (step - barW) / 2;
    for (const x0 of series) {
      const v = p[x0.key] || 0;
      if (v <= 0) continue;
      const bh = (v / max) * inner.h;
      y -= bh;
      svg.append(s('rect', { x, y, width: barW, height: bh, class: x0.cls },
        s('title', {}, `${shortDate(p.start, bucket)}: ${x0.label} ${number(v)}`)));
    }
  });
  const labels = points.length <= 1 ? [0] : [0, Math.floor((points.length - 1) / 2), points.length - 1];
  for (const i of new Set(labels)) {
    if (!points[i]) continue;
    svg.append(s('text', {
      x: M.left + i * step + step / 2, y: H - M.bottom + 16, class: 'tick', 'text-anchor': 'middle',
    }, shortDate(points[i].start, bucket)));
  }
  const table = h('table', { class: 'data' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Start (UTC)'),
      series.map((x) => h('th', { scope: 'col', class: 'n' }, x.label)))),
    h('tbody', {}, points.filter((p) => series.some((x) => p[x.key])).map((p) => h('tr', {},
      h('td', {}, p.start), series.map((x) => h('td', { class: 'n' }, number(p[x.key] || 0)))))));
  return figure(title, summary, svg, legendOf(series), table);
}

/**
 * Horizontal bars, one row per item. `rows`: [{label, values: {key: n}}],
 * `series` as for stackedColumns (stacked left to right).
 */
export function horizontalBars(title, rows, series, empty = 'Nothing to show in this range.') {
  if (rows.length === 0) {
    return h('figure', { class: 'chart' }, h('figcaption', {}, title), h('p', { class: 'muted' }, empty));
  }
  const rowH = 26;
  const labelW = 230;
  const height = rows.length * rowH + 24;
  const totals = rows.map((r) => series.reduce((a, x) => a + (r.values[x.key] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const summary = rows.map((r, i) => `${r.label}: ${number(totals[i])}`).join('; ');
  const svg = svgRoot(title, summary, height);
  const barSpace = W - labelW - 70;
  rows.forEach((r, i) => {
    const y = 8 + i * rowH;
    const label = r.label.length > 34 ? `${r.label.slice(0, 33)}…` : r.label;
    svg.append(s('text', { x: labelW - 8, y: y + 15, class: 'label', 'text-anchor': 'end' },
      s('title', {}, r.label), label));
    let x = labelW;
    for (const x0 of series) {
      const v = r.values[x0.key] || 0;
      if (v <= 0) continue;
      const w = (v / max) * barSpace;
      svg.append(s('rect', { x, y: y + 3, width: Math.max(w, 1), height: rowH - 8, class: x0.cls },
        s('title', {}, `${r.label}: ${x0.label} ${number(v)}`)));
      x += w;
    }
    svg.append(s('text', { x: x + 6, y: y + 15, class: 'tick' }, number(totals[i])));
  });
  const table = h('table', { class: 'data' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Item'),
      series.map((x) => h('th', { scope: 'col', class: 'n' }, x.label)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, h('td', {}, r.label),
      series.map((x) => h('td', { class: 'n' }, number(r.values[x.key] || 0)))))));
  return figure(title, summary, svg, series.length > 1 ? legendOf(series) : null, table);
}

/**
 * Lines of rates (0-1) over time; a null value (suppressed) breaks the line.
 * `lines`: [{label, cls, points: [{start, value|null}]}].
 */
export function rateLines(title, lines, bucket, note) {
  const svg = svgRoot(title, `${lines.length} purposes; ${note}`);
  yAxis(svg, 1, (v) => `${Math.round(v * 100)}%`);
  const inner = { w: W - M.left - M.right, h: H - M.top - M.bottom };
  const n = Math.max(...lines.map((l) => l.points.length), 1);
  const xAt = (i) => M.left + (n === 1 ? inner.w / 2 : (i * inner.w) / (n - 1));
  const yAt = (v) => M.top + inner.h - v * inner.h;
  for (const line of lines) {
    let d = '';
    let pen = false;
    line.points.forEach((p, i) => {
      if (p.value === null || p.value === undefined) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${xAt(i).toFixed(1)},${yAt(p.value).toFixed(1)}`;
      pen = true;
    });
    if (d) svg.append(s('path', { d, class: `line ${line.cls}` }, s('title', {}, line.label)));
    const last = [...line.points].reverse().find((p) => p.value !== null && p.value !== undefined);
    if (last) {
      const i = line.points.lastIndexOf(last);
      svg.append(s('circle', { cx: xAt(i), cy: yAt(last.value), r: 3, class: `dot ${line.cls}` },
        s('title', {}, `${line.label}: ${Math.round(last.value * 100)}% at ${last.start.slice(0, 10)}`)));
    }
  }
  const first = lines[0]?.points[0];
  const lastP = lines[0]?.points[lines[0].points.length - 1];
  if (first) svg.append(s('text', { x: xAt(0), y: H - M.bottom + 16, class: 'tick', 'text-anchor': 'start' }, shortDate(first.start, bucket)));
  if (lastP && n > 1) svg.append(s('text', { x: xAt(n - 1), y: H - M.bottom + 16, class: 'tick', 'text-anchor': 'end' }, shortDate(lastP.start, bucket)));
  const table = h('table', { class: 'data' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Purpose'), h('th', { scope: 'col' }, 'Latest rate'),
      h('th', { scope: 'col' }, 'Buckets suppressed'))),
    h('tbody', {}, lines.map((l) => {
      const last = [...l.points].reverse().find((p) => p.value !== null && p.value !== undefined);
      return h('tr', {}, h('td', {}, l.label),
        h('td', { class: 'n' }, last ? `${(last.value * 100).toFixed(1)}%` : 'suppressed'),
        h('td', { class: 'n' }, number(l.points.filter((p) => p.value === null).length)));
    })));
  return h('figure', { class: 'chart' },
    h('figcaption', {}, title), svg,
    legendOf(lines.map((l) => ({ label: l.label, cls: l.cls }))),
    h('p', { class: 'muted small' }, note),
    h('details', {}, h('summary', {}, `${title}: data table`), table));
}

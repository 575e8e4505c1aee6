// Overview: the charts an officer would rather look at than read. Every
// number is aggregated by the gateway (`/v1/audit/stats/*`,
// `/v1/consents/rates`, `/v1/privacy/budget`); the page never loads the trail.

import { h, put, number } from './dom.js';
import { getJson } from './api.js';
import { errorBox, loading } from './ui.js';
import { stackedColumns, horizontalBars, rateLines } from './charts.js';

const DECISIONS = [
  { key: 'allow', label: 'Allowed', cls: 's-allow' },
  { key: 'deny', label: 'Denied', cls: 's-deny' },
];

const RANGES = [
  { value: '1', label: 'Last 24 hours (hourly)', bucket: 'hour' },
  { value: '7', label: 'Last 7 days', bucket: 'day' },
  { value: '30', label: 'Last 30 days', bucket: 'day' },
  { value: '90', label: 'Last 90 days', bucket: 'day' },
];

export function overview(root) {
  const select = h('select', { id: 'overview-range' },
    RANGES.map((r) => h('option', { value: r.value, selected: r.value === '30' }, r.label)));
  const refresh = h('button', { type: 'button' }, 'Refresh');
  const grid = h('div', { class: 'charts', 'aria-live': 'polite' });
  put(root,
    h('h2', {}, 'Overview'),
    h('div', { class: 'toolbar' }, h('label', { for: 'overview-range' }, 'Range'), select, refresh),
    grid);

  async function panel(slot, what, load) {
    put(slot, loading());
    try {
      put(slot, await load());
    } catch (e) {
      put(slot, h('h3', {}, what), errorBox(e, `see ${what.toLowerCase()}`));
    }
  }

  function draw() {
    const range = RANGES.find((r) => r.value === select.value) || RANGES[2];
    const q = { days: range.value, bucket: range.bucket };
    const slots = Array.from({ length: 5 }, () => h('div', { class: 'chart-slot' }));
    put(grid, slots);
    panel(slots[0], 'Decisions over time', async () => {
      const d = await getJson('/v1/audit/stats/decisions', q);
      const chart = stackedColumns('Decisions over time', d.points, DECISIONS, d.bucket);
      return h('div', { id: 'chart-decisions' },
        h('p', { class: 'kpis' },
          h('span', { class: 'kpi' }, h('strong', {}, number(d.total_allow)), ' allowed'),
          h('span', { class: 'kpi deny' }, h('strong', {}, number(d.total_deny)), ' denied')),
        chart);
    });
    panel(slots[1], 'Denials by actor and reason', async () => {
      const d = await getJson('/v1/audit/stats/denials', { days: range.value, limit: 10 });
      return h('div', { id: 'chart-denials' }, horizontalBars('Denials by actor and reason',
        d.rows.map((r) => ({ label: `${r.actor} · ${r.reason}`, values: { deny: r.count } })),
        [DECISIONS[1]], 'No denials in this range.'));
    });
    panel(slots[2], 'Accesses to customer data by purpose', async () => {
      const d = await getJson('/v1/audit/stats/purposes', { days: range.value });
      return h('div', { id: 'chart-purposes' }, horizontalBars('Accesses to customer data by purpose',
        d.rows.map((r) => ({ label: r.purpose ?? '(no purpose declared)', values: { allow: r.allow, deny: r.deny } })),
        DECISIONS, 'No access to customer data in this range.'));
    });
    panel(slots[3], 'Consent rates by purpose', async () => {
      const d = await getJson('/v1/consents/rates', { days: range.value, bucket: range.bucket });
      const lines = d.purposes.map((p, i) => ({
        label: p.purpose,
        cls: `s${i % 6}`,
        points: p.points.map((x) => ({ start: x.start, value: x.suppressed ? null : x.rate })),
      }));
      return h('div', { id: 'chart-consent' }, rateLines('Consent rates by purpose', lines, d.bucket,
        `Share of customers with a current grant. A point resting on fewer than ${d.k} customers is suppressed (gap in the line).`));
    });
    panel(slots[4], 'Privacy budget spent by principal', async () => {
      const d = await getJson('/v1/privacy/budget', { scope: 'all' });
      const rows = (Array.isArray(d) ? d : d.budgets || d.principals || d.rows || []).map((r) => ({
        label: `${r.principal ?? r.sub ?? r.actor ?? '?'}${r.purpose ? ` · ${r.purpose}` : ''}`,
        values: { spent: Number(r.spent_epsilon ?? r.spent ?? 0) },
      }));
      return h('div', { id: 'chart-budget' }, horizontalBars('Privacy budget spent by principal (ε)', rows,
        [{ key: 'spent', label: 'ε spent', cls: 's-budget' }], 'No privacy budget spent in the current window.'));
    });
  }

  select.addEventListener('change', draw);
  refresh.addEventListener('click', draw);
  return { show: draw };
}

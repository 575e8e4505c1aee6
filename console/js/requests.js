// Requests: the data subject request queue (`GET /v1/dsr`), due dates
// first, overdue ones marked in words as well as colour.

import { h, put, when } from './dom.js';
import { getJson } from './api.js';
import { errorBox, loading } from './ui.js';

const DAY = 86_400_000;

export function dueText(dueIso, status, now = Date.now()) {
  if (['completed', 'refused'].includes(status)) return { text: 'closed', overdue: false };
  const due = Date.parse(dueIso);
  if (Number.isNaN(due)) return { text: '', overdue: false };
  const days = Math.ceil((due - now) / DAY);
  if (due < now) return { text: `overdue by ${Math.max(1, -days)} day${-days > 1 ? 's' : ''}`, overdue: true };
  return { text: `due in ${days} day${days === 1 ? '' : 's'}`, overdue: false };
}

export function requests(root) {
  const status = h('select', { id: 'r-status' },
    ['', 'received', 'in_progress', 'on_hold', 'completed', 'refused'].map((s) =>
      h('option', { value: s }, s === '' ? 'Any status' : s.replace('_', ' '))));
  const overdue = h('input', { type: 'checkbox', id: 'r-overdue' });
  const out = h('div', { id: 'requests-results', 'aria-live': 'polite' });
  put(root,
    h('h2', {}, 'Data subject requests'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'r-status' }, 'Status'), status,
      h('label', { for: 'r-overdue', class: 'inline' }, overdue, ' Overdue only')),
    out);

  async function load() {
    put(out, loading());
    try {
      const data = await getJson('/v1/dsr', { status: status.value, overdue: overdue.checked ? 'true' : undefined });
      const list = data.requests || data.items || (Array.isArray(data) ? data : []);
      list.sort((a, b) => String(a.due_at ?? a.due).localeCompare(String(b.due_at ?? b.due)));
      put(out, list.length === 0 ? h('p', { class: 'muted' }, 'No request matches.') :
        h('table', { class: 'data', id: 'requests-table' },
          h('caption', { class: 'sr-only' }, 'Data subject requests by due date'),
          h('thead', {}, h('tr', {}, ['Request', 'Kind', 'Customer', 'Status', 'Received', 'Due', '']
            .map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, list.map((r) => {
            const due = dueText(r.due_at ?? r.due, r.status);
            return h('tr', { class: due.overdue ? 'overdue' : null },
              h('td', {}, h('code', {}, String(r.id))), h('td', {}, r.kind),
              h('td', {}, String(r.customer_id ?? r.customer ?? '')),
              h('td', {}, String(r.status).replace('_', ' ')),
              h('td', {}, when(r.received_at)), h('td', {}, when(r.due_at ?? r.due)),
              h('td', { class: due.overdue ? 'overdue-text' : 'muted' }, due.overdue ? h('strong', {}, due.text) : due.text));
          }))));
    } catch (e) {
      put(out, errorBox(e, 'read the data subject request queue'));
    }
  }
  status.addEventListener('change', load);
  overdue.addEventListener('change', load);
  return { show: load };
}

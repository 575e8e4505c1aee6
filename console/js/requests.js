// Requests: the data subject request queue (`GET /v1/dsr`), due dates
// first, overdue ones marked in words as well as colour.

import { h, put, when } from './dom.js';
import { getJson } from './api.js';
import { errorBox, loading } from './ui.js';

const DAY = 86_400_000;

/**
 * Words for a request's due date. `overdue` is the gateway's verdict (its
 * clock decides); the day count uses this machine's clock and is left out
 * when the two disagree.
 */
export function dueText(dueIso, status, overdue, now = Date.now()) {
  if (['completed', 'refused'].includes(status)) return { text: 'closed', overdue: false };
  const due = Date.parse(dueIso);
  const days = Number.isNaN(due) ? null : Math.round((due - now) / DAY);
  if (overdue) {
    return { text: days !== null && days < 0 ? `overdue by ${-days} day${days === -1 ? '' : 's'}` : 'overdue', overdue: true };
  }
  if (days === null || days < 0) return { text: `due ${String(dueIso).slice(0, 10)}`, overdue: false };
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
      const list = [];
      let after;
      for (let i = 0; i < 10; i++) {
        const data = await getJson('/v1/dsr', {
          status: status.value, overdue: overdue.checked ? 'true' : undefined, limit: 100, after,
        });
        list.push(...(data.requests || []));
        if (!data.next_cursor) break;
        after = data.next_cursor;
      }
      list.sort((a, b) => String(a.due_at).localeCompare(String(b.due_at)));
      put(out, list.length === 0 ? h('p', { class: 'muted' }, 'No request matches.') :
        h('table', { class: 'data', id: 'requests-table' },
          h('caption', { class: 'sr-only' }, 'Data subject requests by due date'),
          h('thead', {}, h('tr', {}, ['Request', 'Kind', 'Customer', 'Status', 'Received', 'Due', '']
            .map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, list.map((r) => {
            const due = dueText(r.due_at, r.status, r.overdue === true);
            return h('tr', { class: due.overdue ? 'overdue' : null },
              h('td', {}, h('code', {}, String(r.id))), h('td', {}, r.kind),
              h('td', {}, String(r.customer ?? ''), r.customer_erased ? h('span', { class: 'muted small' }, ' (erased)') : null),
              h('td', {}, String(r.status).replace('_', ' '),
                r.status_reason ? h('span', { class: 'muted small' }, ` (${r.status_reason})`) : null,
                r.legal_hold ? h('span', { class: 'muted small' }, ' · legal hold') : null),
              h('td', {}, when(r.received_at)), h('td', {}, when(r.due_at)),
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

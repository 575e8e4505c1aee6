// Requests: the data subject request queue (`GET /v1/dsr`), due dates
// first, overdue ones marked in words as well as colour, with the steps
// the signed-in role may take on each (see actions.js).

import { h, put, when } from './dom.js';
import { getJson } from './api.js';
import { errorBox, loading } from './ui.js';
import { actionDialog } from './actions.js';

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
  const message = h('div', { id: 'requests-message', role: 'status', tabindex: '-1' });
  const actions = actionDialog((text) => {
    load().then(() => {
      put(message, h('p', { class: 'notice ok' }, text));
      message.focus();
    });
  }, () => load());
  put(root,
    h('h2', {}, 'Data subject requests'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'r-status' }, 'Status'), status,
      h('label', { for: 'r-overdue', class: 'inline' }, overdue, ' Overdue only')),
    message,
    out,
    actions.dialog);

  async function load() {
    message.replaceChildren();
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
      // Open requests always admit some step for a role that may act, so
      // none at all means this role may only read the queue.
      const open = list.filter((r) => !['completed', 'refused'].includes(r.status));
      const readOnly = open.length > 0 && open.every((r) => (r.actions || []).length === 0);
      put(out, list.length === 0 ? h('p', { class: 'muted' }, 'No request matches.') : [
        readOnly ? h('p', { class: 'notice', id: 'requests-read-only' },
          'Your role may read this queue but take no step on these requests.') : null,
        h('table', { class: 'data', id: 'requests-table' },
          h('caption', { class: 'sr-only' }, 'Data subject requests by due date'),
          h('thead', {}, h('tr', {}, ['Request', 'Kind', 'Customer', 'Status', 'Received', 'Due', '', 'Actions']
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
              h('td', { class: due.overdue ? 'overdue-text' : 'muted' }, due.overdue ? h('strong', {}, due.text) : due.text),
              h('td', {}, actions.buttons(r)));
          })))]);
    } catch (e) {
      put(out, errorBox(e, 'read the data subject request queue'));
    }
  }
  status.addEventListener('change', load);
  overdue.addEventListener('change', load);
  return { show: load };
}

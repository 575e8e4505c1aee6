// One customer's view: every access to one data subject's data (who, when,
// purpose, decision, treatment), the consent state for that purpose at
// that moment, and their open data subject requests. The answer to "who
// looked at my data?".

import { h, put, when, field, number } from './dom.js';
import { getJson, ApiError } from './api.js';
import { errorBox, loading, badge } from './ui.js';
import { eventTime, treatments, eventDetail, showPolicy } from './trail.js';

/** The consent state for `purpose` at `atMicros`, from a ledger history. */
export function consentAt(history, purpose, atMicros, purposes) {
  const p = purposes.get(purpose);
  if (!purpose) return 'no purpose declared';
  if (p && !p.consent_required) return `not needed (${p.legal_basis.replaceAll('_', ' ')})`;
  let state = 'none recorded';
  for (const ev of history) {
    if (ev.purpose !== purpose) continue;
    const t = Date.parse(ev.occurred_at);
    const at = Number.isNaN(t) ? Number(ev.occurred_at) / 1000 : t;
    if (at > atMicros / 1000) break;
    state = ev.granted ? 'granted' : 'withdrawn';
  }
  return state;
}

export function customerView(root) {
  const input = h('input', { type: 'text', id: 'c-id', required: true, maxlength: 64, spellcheck: 'false' });
  const form = h('form', { class: 'filters', id: 'customer-form' },
    field("The shop's customer id", input),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Show accesses')));
  const out = h('div', { id: 'customer-results', 'aria-live': 'polite' });
  const side = h('div', { id: 'customer-detail', class: 'side', tabindex: '-1' },
    h('p', { class: 'muted' }, 'Open an access to see the event.'));
  const policySlot = h('div', {});
  put(root,
    h('h2', {}, 'One customer'),
    h('p', { class: 'muted' }, 'Every access to one person\'s data, with the consent state at that moment and their open requests. Looking them up is itself recorded in their trail.'),
    form, h('div', { class: 'split' }, out, h('div', {}, side, policySlot)));

  let purposes = new Map();

  async function show(id) {
    put(out, loading());
    put(side, h('p', { class: 'muted' }, 'Open an access to see the event.'));
    put(policySlot);
    try {
      if (purposes.size === 0) {
        const list = await getJson('/v1/purposes');
        purposes = new Map((list.purposes || list).map((p) => [p.id, p]));
      }
      const [trailResult, consentResult, dsrResult] = await Promise.allSettled([
        allAccesses(id),
        getJson(`/v1/consents/${encodeURIComponent(id)}`),
        requestsOf(id),
      ]);
      if (trailResult.status === 'rejected') throw trailResult.reason;
      const { events, more } = trailResult.value;
      const history = consentResult.status === 'fulfilled' ? consentResult.value.history || [] : [];
      const parts = [h('h3', { id: 'customer-title' }, `Customer ${id}`)];
      if (consentResult.status === 'rejected') {
        const e = consentResult.reason;
        if (e instanceof ApiError && e.status === 410) {
          parts.push(h('p', { class: 'notice' }, 'This customer was erased: their data is gone, the trail of who accessed it remains.'));
        } else if (e instanceof ApiError && e.status === 404) {
          parts.push(h('p', { class: 'notice' }, 'No such customer in the store. Accesses recorded under this id, if any, are listed below.'));
        } else {
          parts.push(errorBox(e, 'read consent history'));
        }
      } else {
        const current = consentResult.value.current || [];
        parts.push(h('p', { id: 'consent-now' }, 'Consent now: ',
          current.length === 0 ? 'nothing recorded' :
            current.map((c) => `${c.purpose} ${c.granted ? 'granted' : 'withdrawn'}`).join(', ')));
      }
      parts.push(requestsPart(dsrResult));
      parts.push(h('h3', {}, `Accesses (${number(events.length)}${more ? '+' : ''}), newest first`));
      parts.push(events.length === 0 ? h('p', { class: 'muted' }, 'No access recorded.') :
        h('table', { class: 'data', id: 'customer-table' },
          h('caption', { class: 'sr-only' }, `Accesses to customer ${id}`),
          h('thead', {}, h('tr', {}, ['When (UTC)', 'Who', 'Action', 'Purpose', 'Decision', 'Treatment', 'Consent then']
            .map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, events.map((e) => h('tr', { class: e.decision === 'deny' ? 'denied' : null },
            h('td', {}, h('button', {
              type: 'button', class: 'link',
              onclick: () => {
                put(side, h('h3', {}, `Event ${e.instance} #${e.seq}`), eventDetail(e, (v) => showPolicy(policySlot, v)));
                side.focus();
              },
            }, when(eventTime(e)))),
            h('td', {}, e.actor, h('br'), h('span', { class: 'muted small' }, (e.roles || []).join(', '))),
            h('td', {}, e.action),
            h('td', {}, e.purpose ?? '—'),
            h('td', {}, badge(e.decision)),
            h('td', { class: 'small' }, treatments(e) || '—'),
            h('td', {}, consentAt(history, e.purpose, e.occurred_at, purposes)))))));
      if (more) parts.push(h('p', { class: 'muted' }, 'Showing the newest 500; export the trail filtered by this customer for all of them.'));
      put(out, parts);
    } catch (e) {
      put(out, errorBox(e, "read this customer's trail"));
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = input.value.trim();
    if (id) show(id);
  });
  return { show() {}, open: (id) => { input.value = id; show(id); } };
}

/** The customer's requests: the queue has no customer filter, so pages of
 * it are read and matched here (a queue is hundreds, not millions). */
async function requestsOf(id) {
  const mine = [];
  let after;
  for (let i = 0; i < 10; i++) {
    const page = await getJson('/v1/dsr', { limit: 100, after });
    mine.push(...(page.requests || []).filter((r) => r.customer === id));
    if (!page.next_cursor) break;
    after = page.next_cursor;
  }
  return { requests: mine };
}

async function allAccesses(id) {
  const events = [];
  let cursor;
  for (let i = 0; i < 5; i++) {
    const page = await getJson('/v1/audit', { customer: id, limit: 100, cursor });
    events.push(...page.events);
    if (!page.next_cursor) return { events, more: false };
    cursor = page.next_cursor;
  }
  return { events, more: true };
}

function requestsPart(result) {
  if (result.status === 'rejected') {
    return h('div', { id: 'customer-requests' }, h('h3', {}, 'Open requests'), errorBox(result.reason, 'read data subject requests'));
  }
  const list = (result.value.requests || result.value.items || result.value || [])
    .filter((r) => !['completed', 'refused'].includes(r.status));
  return h('div', { id: 'customer-requests' }, h('h3', {}, 'Open requests'),
    list.length === 0 ? h('p', { class: 'muted' }, 'No open request.') :
      h('ul', {}, list.map((r) => h('li', {}, `${r.kind} · ${r.status} · due ${when(r.due_at ?? r.due)}`))));
}

// The audit trail: structured filters, cursor paging (newest first), and
// the detail of one event: fields and treatments, the rule or consent
// state that decided, the policy version in force, the privacy block.

import { h, put, when, fromMicros, localToIso, field, number } from './dom.js';
import { getJson } from './api.js';
import { errorBox, loading, badge, reasonParts } from './ui.js';

const ACTIONS = [
  'auth.failed', 'customer.read', 'customer.search', 'customer.export', 'customer.erase',
  'consent.read', 'consent.write', 'segment.query', 'recommendation.read', 'pseudonym.resolve',
  'policy.change', 'key.rotate', 'import', 'audit.read', 'audit.export', 'audit.prune',
];

/** The trail's current filter, shared with the export buttons. */
export const currentFilter = {};

export function eventTime(e) {
  return e.occurred_at !== undefined ? fromMicros(e.occurred_at) : e.time;
}

export function treatments(e) {
  return (e.fields || []).map(([name, t]) => `${name}: ${t}`).join(', ');
}

/** Renders one event in full. `onPolicy(version)` opens a policy version. */
export function eventDetail(e, onPolicy) {
  const [kind, rule] = reasonParts(e.reason);
  const rows = [
    ['Time', when(eventTime(e))],
    ['Chain', `${e.instance} #${e.seq}`],
    ['Request id', e.request_id],
    ['Actor', e.actor],
    ['Roles', (e.roles || []).join(', ') || '—'],
    ['Action', e.action],
    ['Resource', e.resource],
    ['Purpose', e.purpose ?? '—'],
    ['Decision', badge(e.decision)],
    [kind, h('code', {}, rule)],
    ['HTTP status', String(e.status)],
    ['Records returned', number(e.records ?? 0)],
    ['Customers (internal ids)', (e.customers || []).join(', ') || '—'],
  ];
  if (e.policy_version !== undefined && e.policy_version !== null) {
    rows.push(['Policy version', h('button', {
      type: 'button', class: 'link', id: 'open-policy',
      onclick: () => onPolicy(String(e.policy_version)),
    }, `${String(e.policy_version).slice(0, 16)} (open)`)]);
  }
  const fields = e.fields || [];
  const privacy = e.privacy ?? null;
  const rights = e.subject_rights ?? null;
  const served = e.served ?? null;
  return h('div', { class: 'detail' },
    h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    h('h4', {}, 'Fields and treatments'),
    fields.length === 0 ? h('p', { class: 'muted' }, 'No personal fields returned.') :
      h('table', { class: 'data compact' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Treatment'))),
        h('tbody', {}, fields.map(([name, t]) => h('tr', {}, h('td', {}, name),
          h('td', {}, h('span', { class: `treat t-${t}` }, t)))))),
    privacy ? [h('h4', {}, 'Privacy'), keyValues(privacy)] : null,
    rights ? [h('h4', {}, 'Subject rights'), keyValues(rights)] : null,
    served ? [h('h4', {}, 'Served'), keyValues(served)] : null,
    h('h4', {}, 'Hashes'),
    h('dl', { class: 'kv small' },
      h('dt', {}, 'prev_hash'), h('dd', {}, h('code', { class: 'hash' }, e.prev_hash)),
      h('dt', {}, 'hash'), h('dd', {}, h('code', { class: 'hash' }, e.hash))));
}

function keyValues(obj) {
  return h('dl', { class: 'kv' }, Object.entries(obj).map(([k, v]) => [
    h('dt', {}, k),
    h('dd', {}, typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)),
  ]));
}

/** Shows one policy version (`GET /v1/admin/policies/{version}`). */
export async function showPolicy(slot, version) {
  put(slot, loading('Loading the policy version…'));
  try {
    const p = await getJson(`/v1/admin/policies/${encodeURIComponent(version)}`);
    const rules = p.rules || (p.csv ? p.csv.split('\n').filter(Boolean) : []);
    put(slot, h('div', { class: 'policy', id: 'policy-version' },
      h('h4', {}, `Policy version ${String(p.version ?? version).slice(0, 16)}`),
      h('p', { class: 'muted small' },
        `Revision ${p.revision ?? '?'}, stored by ${p.actor ?? '?'} at ${when(p.created_at)}. `,
        'These are the exact rules that decided the event.'),
      h('pre', { class: 'rules' }, rules.join('\n'))));
  } catch (e) {
    put(slot, errorBox(e, 'read policy versions'));
  }
}

export function trail(root) {
  const from = h('input', { type: 'datetime-local', id: 'f-from', step: 1 });
  const to = h('input', { type: 'datetime-local', id: 'f-to', step: 1 });
  const actor = h('input', { type: 'text', id: 'f-actor', maxlength: 256, spellcheck: 'false' });
  const customer = h('input', { type: 'text', id: 'f-customer', maxlength: 64, spellcheck: 'false' });
  const purpose = h('input', { type: 'text', id: 'f-purpose', maxlength: 64, list: 'purpose-list', spellcheck: 'false' });
  const action = h('input', { type: 'text', id: 'f-action', maxlength: 64, list: 'action-list', spellcheck: 'false' });
  const decision = h('select', { id: 'f-decision' },
    h('option', { value: '' }, 'Any'), h('option', { value: 'allow' }, 'Allowed'), h('option', { value: 'deny' }, 'Denied'));
  const status = h('input', { type: 'number', id: 'f-status', min: 100, max: 599 });
  const form = h('form', { class: 'filters', id: 'trail-filters' },
    field('From', from), field('To', to), field('Actor', actor), field('Customer id', customer),
    field('Purpose', purpose), field('Action', action), field('Decision', decision), field('HTTP status', status),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Apply filters'),
      h('button', { type: 'reset', class: 'secondary' }, 'Clear')),
    h('datalist', { id: 'action-list' }, ACTIONS.map((a) => h('option', { value: a }))),
    h('datalist', { id: 'purpose-list' }));
  const results = h('div', { id: 'trail-results', 'aria-live': 'polite' });
  const detail = h('div', { id: 'event-detail', class: 'side', tabindex: '-1' },
    h('p', { class: 'muted' }, 'Open an event to see its detail.'));
  const policySlot = h('div', { id: 'policy-slot' });
  put(root,
    h('h2', {}, 'Audit trail'),
    h('p', { class: 'muted' }, 'Every decision of the gateway, allowed or denied, newest first. Filters combine with AND.'),
    form,
    h('div', { class: 'split' }, results, h('div', {}, detail, policySlot)));

  let cursors = [undefined];
  let page = 0;

  function readFilter() {
    for (const k of Object.keys(currentFilter)) delete currentFilter[k];
    Object.assign(currentFilter, {
      from: localToIso(from.value),
      to: localToIso(to.value),
      actor: actor.value.trim() || undefined,
      customer: customer.value.trim() || undefined,
      purpose: purpose.value.trim() || undefined,
      action: action.value.trim() || undefined,
      decision: decision.value || undefined,
      status: status.value || undefined,
    });
  }

  function open(e) {
    put(policySlot);
    put(detail, h('h3', {}, `Event ${e.instance} #${e.seq}`),
      eventDetail(e, (v) => showPolicy(policySlot, v)));
    detail.focus();
  }

  async function load() {
    put(results, loading());
    try {
      const data = await getJson('/v1/audit', { ...currentFilter, cursor: cursors[page], limit: 50 });
      if (data.next_cursor) cursors[page + 1] = data.next_cursor;
      else cursors = cursors.slice(0, page + 1);
      const rows = data.events.map((e) => {
        const openBtn = h('button', { type: 'button', class: 'link', onclick: () => open(e) },
          when(eventTime(e)));
        return h('tr', { class: e.decision === 'deny' ? 'denied' : null },
          h('td', {}, openBtn), h('td', {}, e.actor), h('td', {}, e.action), h('td', {}, e.purpose ?? '—'),
          h('td', {}, badge(e.decision)), h('td', { class: 'n' }, String(e.status)),
          h('td', { class: 'n' }, String((e.customers || []).length)));
      });
      put(results,
        data.events.length === 0 ? h('p', { class: 'muted', id: 'trail-empty' }, 'No event matches these filters.') :
          h('table', { class: 'data', id: 'trail-table' },
            h('caption', { class: 'sr-only' }, 'Audit events, newest first'),
            h('thead', {}, h('tr', {}, ['Time (UTC)', 'Actor', 'Action', 'Purpose', 'Decision', 'Status', 'Customers']
              .map((c) => h('th', { scope: 'col' }, c)))),
            h('tbody', {}, rows)),
        h('div', { class: 'pager' },
          h('button', { type: 'button', id: 'page-newer', disabled: page === 0, onclick: () => { page -= 1; load(); } }, '← Newer'),
          h('span', { class: 'muted' }, `Page ${page + 1}`),
          h('button', { type: 'button', id: 'page-older', disabled: !data.next_cursor, onclick: () => { page += 1; load(); } }, 'Older →')));
    } catch (e) {
      put(results, errorBox(e, 'read the audit trail'));
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    readFilter();
    cursors = [undefined];
    page = 0;
    load();
  });
  form.addEventListener('reset', () => setTimeout(() => form.requestSubmit(), 0));

  let loaded = false;
  return {
    show() {
      if (!loaded) {
        loaded = true;
        readFilter();
        load();
        getJson('/v1/purposes').then((list) => {
          put(form.querySelector('#purpose-list'), (list.purposes || list).map((p) => h('option', { value: p.id })));
        }).catch(() => {});
      }
    },
  };
}

// The steps an officer may take on a data subject request. The gateway
// lists them on each request (`actions`: what the request's state admits
// and the signed-in role's policy allows), so the page offers nothing the
// role cannot do; the gated route still decides every call. Each step asks
// for confirmation in a modal dialog (a reason where the API wants one),
// calls its route with the compliance purpose, and reports the gateway's
// answer as text: its JSON error code and message on failure.

import { h, put, when } from './dom.js';
import { call, PURPOSE } from './api.js';

const path = (r, step) => `/v1/dsr/${encodeURIComponent(r.id)}/${step}`;
const holdPath = (r) => `/v1/dsr/legal-holds/${encodeURIComponent(r.customer)}/lift`;

async function post(url, body) {
  const response = await call(url, { method: 'POST', body });
  return { status: response.status, body: await response.json() };
}

const RECTIFIABLE = [
  ['email', 'E-mail', 'email'], ['phone', 'Phone', 'tel'], ['name', 'Name', 'text'],
  ['birth_date', 'Birth date (YYYY-MM-DD)', 'text'], ['postcode', 'Postcode', 'text'],
  ['city', 'City', 'text'], ['country', 'Country', 'text'],
];

/**
 * Each step: the button's words, the dialog's title and explanation, what
 * the dialog asks for, the call, and the words for its success.
 */
export const STEPS = {
  extend: {
    label: 'Extend',
    title: 'Extend the deadline',
    explain: 'Moves the due date once, by the configured extension (GDPR Art. 12(3) allows two more months). The data subject must be told why.',
    reason: true,
    run: (r, v) => post(path(r, 'extend'), { reason: v.reason }),
    done: (r, out) => `Extended ${r.id}: now due ${when(out.body.due_at)}.`,
  },
  refuse: {
    label: 'Refuse',
    title: 'Refuse the request',
    explain: 'Closes the request as refused (Art. 12(4)): manifestly unfounded or excessive, or the requester could not be identified. This cannot be reopened.',
    reason: true,
    danger: true,
    run: (r, v) => post(path(r, 'refuse'), { reason: v.reason }),
    done: (r) => `Refused ${r.id}.`,
  },
  export: {
    label: 'Generate document',
    title: 'Fulfil the request',
    explain: 'Generates the document with everything held about the customer (a JSON document for access, a zip of CSV files for portability), stored encrypted and downloadable for a limited time. The request is completed.',
    run: (r) => post(path(r, 'export')),
    done: (r, out) => (out.status === 202
      ? `${r.id}: the document is still being generated; the request shows it when ready.`
      : `${r.id}: the document is ready and the request is completed.`),
  },
  rectify: {
    label: 'Correct fields',
    title: 'Rectify profile fields',
    explain: 'Enter only the fields to correct. Values are re-encrypted under a fresh key; the audit trail names the fields, never a value. The request is completed.',
    fields: true,
    run: (r, v) => post(path(r, 'rectify'), v.fields),
    done: (r, out) => `Rectified ${r.id}: ${out.body.changed.length ? `changed ${out.body.changed.join(', ')}` : 'no value differed'}.`,
  },
  erase: {
    label: 'Erase',
    title: 'Erase the customer',
    explain: 'Destroys the customer\'s data key (crypto-shredding), removes their data and issues a signed erasure certificate. This cannot be undone.',
    danger: true,
    acknowledge: 'I understand the customer\'s data will be destroyed and cannot be restored.',
    run: (r) => post(path(r, 'erase')),
    done: (r, out) => (out.body.certificate
      ? `Erased the customer of ${r.id}; the certificate is signed.`
      : `${r.id}: ${out.body.request.status === 'on_hold' ? 'on hold: a legal hold blocks the erasure' : 'the erasure is still running and completes on its own'}.`),
  },
  hold: {
    label: 'Place legal hold',
    title: 'Place a legal hold',
    explain: 'While the hold is active the customer cannot be erased; erasure requests go on hold and stay open (Art. 17(3)).',
    reason: true,
    run: (r, v) => post('/v1/dsr/legal-holds', { customer_id: r.customer, reason: v.reason }),
    done: (r) => `Legal hold placed on customer ${r.customer}.`,
  },
  lift_hold: {
    label: 'Lift legal hold',
    title: 'Lift the legal hold',
    explain: 'The customer can be erased again; erasure requests on hold return to received, to be run again.',
    reason: true,
    run: (r, v) => post(holdPath(r), { reason: v.reason }),
    done: (r) => `Legal hold lifted for customer ${r.customer}.`,
  },
};

/** The gateway's refusal in words, with its error code, as text. */
export function failure(error) {
  const lead = error.status === 403 ? 'Not allowed' : error.status === 0 ? 'Not sent' : 'Refused';
  return `${lead} (${error.code}): ${error.message}`;
}

/**
 * The dialog shared by every step. `onDone(message)` runs after a step
 * succeeded, `onStale()` when the dialog closes after the gateway said the
 * request changed meanwhile (409, 404, 410); the caller refreshes the list.
 */
export function actionDialog(onDone, onStale) {
  const dialog = h('dialog', { id: 'dsr-dialog', 'aria-labelledby': 'dsr-dialog-title' });
  let opener = null;
  let stale = false;
  dialog.addEventListener('close', () => {
    if (stale) {
      stale = false;
      onStale();
    } else if (opener && opener.isConnected) {
      opener.focus();
    }
  });

  function open(r, name, button) {
    const step = STEPS[name];
    opener = button;
    const reason = step.reason ? h('textarea', {
      id: 'dsr-reason', name: 'reason', required: true, maxlength: '500', rows: '3',
      'aria-describedby': 'dsr-reason-help',
    }) : null;
    const fields = step.fields ? RECTIFIABLE.map(([key, label, type]) =>
      [key, h('input', { id: `dsr-f-${key}`, name: key, type, autocomplete: 'off', spellcheck: 'false' }), label]) : [];
    const ack = step.acknowledge ? h('input', { type: 'checkbox', id: 'dsr-ack', required: true }) : null;
    const error = h('div', { id: 'dsr-dialog-error', role: 'alert' });
    const confirm = h('button', { type: 'submit', id: 'dsr-confirm', class: step.danger ? 'danger' : null }, step.label);
    const cancel = h('button', { type: 'button', class: 'secondary', id: 'dsr-cancel', onclick: () => dialog.close() }, 'Cancel');
    const form = h('form', { id: 'dsr-form', novalidate: true },
      reason ? [h('label', { for: 'dsr-reason' }, 'Reason'), reason,
        h('p', { id: 'dsr-reason-help', class: 'muted small' }, 'The legal ground, in up to 500 characters; no personal data.')] : null,
      fields.length ? h('div', { class: 'filters' }, fields.map(([, input, label]) =>
        h('div', { class: 'field' }, h('label', { for: input.id }, label), input))) : null,
      ack ? h('label', { for: 'dsr-ack', class: 'inline' }, ack, ` ${step.acknowledge}`) : null,
      error,
      h('div', { class: 'actions' }, confirm, cancel));
    put(dialog,
      h('h2', { id: 'dsr-dialog-title' }, step.title),
      h('dl', { class: 'kv' },
        h('dt', {}, 'Request'), h('dd', {}, h('code', {}, String(r.id))),
        h('dt', {}, 'Kind'), h('dd', {}, String(r.kind)),
        h('dt', {}, 'Customer'), h('dd', {}, String(r.customer)),
        h('dt', {}, 'Due'), h('dd', {}, when(r.due_at))),
      h('p', {}, step.explain),
      form);

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.replaceChildren();
      const value = { reason: reason ? reason.value.trim() : undefined, fields: {} };
      if (reason && value.reason === '') {
        put(error, h('p', { class: 'error' }, 'A reason is required.'));
        reason.focus();
        return;
      }
      if (ack && !ack.checked) {
        put(error, h('p', { class: 'error' }, 'Tick the box to confirm.'));
        ack.focus();
        return;
      }
      for (const [key, input] of fields) {
        if (input.value.trim() !== '') value.fields[key] = input.value.trim();
      }
      confirm.disabled = true;
      put(error, h('p', { class: 'muted', role: 'status' }, 'Sending…'));
      try {
        const out = await step.run(r, value);
        dialog.close();
        onDone(step.done(r, out));
      } catch (e) {
        if (e.status === 401) {
          dialog.close();
          return;
        }
        stale = [404, 409, 410].includes(e.status);
        put(error, h('div', { class: 'notice error' },
          h('p', { id: 'dsr-error-text' }, failure(e)),
          e.status === 403 ? h('p', { class: 'small' }, `Your role may not take this step under the ${PURPOSE} purpose.`) : null,
          stale ? h('p', { class: 'small' }, 'The request changed since the list was read: the list is refreshed when you close this dialog.') : null,
          e.requestId ? h('p', { class: 'muted small' }, `Request id: ${e.requestId}`) : null));
        confirm.disabled = false;
      }
    });
    dialog.showModal();
    (reason || fields[0]?.[1] || ack || confirm).focus();
  }

  /** The buttons for one request: only the steps the gateway listed. */
  function buttons(r) {
    const names = (r.actions || []).filter((n) => Object.hasOwn(STEPS, n));
    if (names.length === 0) {
      return h('span', { class: 'muted' }, h('span', { 'aria-hidden': 'true' }, '—'),
        h('span', { class: 'sr-only' }, 'no action available'));
    }
    return h('div', { class: 'actions' }, names.map((name) => {
      const step = STEPS[name];
      const button = h('button', {
        type: 'button',
        class: step.danger ? 'secondary danger' : 'secondary',
        'data-action': name,
        'data-request': String(r.id),
        'aria-label': `${step.label}: request ${r.id}`,
        'aria-haspopup': 'dialog',
      }, step.label);
      button.addEventListener('click', () => open(r, name, button));
      return button;
    }));
  }

  return { dialog, buttons };
}

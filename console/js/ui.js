// Shared pieces of the views: error and status messages.

import { h } from './dom.js';
import { PURPOSE } from './api.js';

/** A message for a failed call, phrased for an officer, not a developer. */
export function describe(error, what) {
  if (error.status === 403) {
    return `Not allowed: your role may not ${what} under the ${PURPOSE} purpose. Ask your administrator for a compliance role.`;
  }
  if (error.missingRoute) {
    return `Not available on this gateway yet (needed to ${what}).`;
  }
  if (error.status === 401) return 'Your session has ended: sign in again.';
  if (error.status === 429) return 'The gateway is busy (rate limited): try again in a moment.';
  if (error.status === 503) return 'The audit store is unavailable, so the gateway refuses every data request (fail-closed). Try again later.';
  if (error.status === 0) return 'The gateway could not be reached.';
  return `${what}: ${error.message}`;
}

/** An alert box for a failed call; names the request id for support. */
export function errorBox(error, what) {
  const cls = error.status === 403 ? 'notice error forbidden' : error.missingRoute ? 'notice' : 'notice error';
  return h('div', { class: cls, role: 'alert' },
    h('p', {}, describe(error, what)),
    error.requestId ? h('p', { class: 'muted small' }, `Request id: ${error.requestId}`) : null);
}

export function loading(text = 'Loading…') {
  return h('p', { class: 'muted', role: 'status' }, text);
}

export function badge(decision) {
  return h('span', { class: `badge ${decision === 'allow' ? 'ok' : 'bad'}` },
    decision === 'allow' ? 'allowed' : decision === 'deny' ? 'denied' : String(decision));
}

/** `policy:p, role, obj, act` → ['Policy rule', 'p, role, obj, act']. */
export function reasonParts(reason) {
  const text = String(reason || '');
  const i = text.indexOf(':');
  const kinds = {
    policy: 'Policy rule',
    consent: 'Consent state',
    auth: 'Authentication',
    admin: 'Administrative reason',
    input: 'Refused input',
    outcome: 'Outcome',
  };
  if (i < 0) return ['Reason', text];
  const kind = text.slice(0, i);
  return [kinds[kind] || 'Reason', text.slice(i + 1)];
}

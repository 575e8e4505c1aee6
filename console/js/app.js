// The console's entry point: sign-in, the tabs, and the role check.

import { signIn, signOut, whenSignedOut, getJson } from './api.js';
import { describe } from './ui.js';
import { overview } from './overview.js';
import { trail } from './trail.js';
import { customerView } from './customer.js';
import { integrity } from './integrity.js';
import { requests } from './requests.js';

const $ = (id) => document.getElementById(id);

const views = {};
let built = false;

function build() {
  if (built) return;
  built = true;
  views.overview = overview($('view-overview'));
  views.trail = trail($('view-trail'));
  views.customer = customerView($('view-customer'));
  views.integrity = integrity($('view-integrity'));
  views.requests = requests($('view-requests'));
}

function select(tab, focus = false) {
  for (const t of document.querySelectorAll('[role=tab]')) {
    const on = t === tab;
    t.setAttribute('aria-selected', String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute('aria-controls')).hidden = !on;
  }
  if (focus) tab.focus();
  const name = tab.id.replace('tab-', '');
  views[name]?.show();
}

function showSignIn(message) {
  $('app').hidden = true;
  $('session').hidden = true;
  $('signin').hidden = false;
  const err = $('signin-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('token').focus();
}

async function start() {
  $('signin').hidden = true;
  $('app').hidden = false;
  $('session').hidden = false;
  const forbidden = $('forbidden');
  forbidden.hidden = true;
  // One cheap call tells whether this role may read the trail at all.
  try {
    await getJson('/v1/audit', { limit: 1 });
  } catch (e) {
    if (e.status === 401) return;
    forbidden.textContent = describe(e, 'read the audit trail');
    forbidden.hidden = false;
    if (e.status === 403) {
      for (const v of document.querySelectorAll('[role=tabpanel]')) v.hidden = true;
      $('tabs').hidden = true;
      return;
    }
  }
  $('tabs').hidden = false;
  build();
  select($('tab-overview'));
}

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = $('token').value.trim().replace(/^Bearer\s+/i, '');
  // Clear the field at once: the token lives only in the API module.
  $('token').value = '';
  if (!value) return;
  signIn(value);
  start();
});

$('sign-out').addEventListener('click', () => {
  signOut();
  window.location.reload();
});

whenSignedOut(() => showSignIn('The gateway refused the token (expired, revoked or malformed): sign in again.'));

const tablist = $('tabs');
tablist.addEventListener('click', (ev) => {
  const tab = ev.target.closest('[role=tab]');
  if (tab) select(tab);
});
tablist.addEventListener('keydown', (ev) => {
  const tabs = [...tablist.querySelectorAll('[role=tab]')];
  const i = tabs.indexOf(document.activeElement);
  if (i < 0) return;
  const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[ev.key];
  if (next === undefined) return;
  ev.preventDefault();
  select(tabs[(next + tabs.length) % tabs.length], true);
});

showSignIn();

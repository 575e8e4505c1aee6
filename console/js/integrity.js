// Integrity: verify every chain and checkpoint in the store, show the
// checkpoint key's fingerprint to compare with the auditor's copy, and
// export the trail (current filter) for offline verification or a
// spreadsheet.

import { h, put, number } from './dom.js';
import { call, getJson, postJson } from './api.js';
import { errorBox, loading } from './ui.js';
import { currentFilter } from './trail.js';

const KINDS = {
  modified: 'an event was changed after it was written',
  deleted: 'an event was removed',
  inserted: 'an event was added that the chain does not know',
  reordered: 'events were reordered',
  truncated: 'the end of the chain was cut off below a signed checkpoint',
  checkpoint_mismatch: 'the events do not match a signed checkpoint',
  bad_signature: 'a checkpoint signature does not verify with this key',
};

export function integrity(root) {
  const result = h('div', { id: 'verify-result', 'aria-live': 'polite' });
  const key = h('div', { id: 'public-key' });
  const exportStatus = h('p', { id: 'export-status', class: 'muted', role: 'status' });
  const verifyBtn = h('button', { type: 'button', id: 'run-verify' }, 'Run verification');
  const filterNote = h('p', { class: 'muted small', id: 'export-filter' });
  put(root,
    h('h2', {}, 'Integrity'),
    h('div', { class: 'cards' },
      h('section', { class: 'card', 'aria-labelledby': 'verify-title' },
        h('h3', { id: 'verify-title' }, 'Verify the trail'),
        h('p', { class: 'muted' }, 'Recomputes every hash chain and checks every signed checkpoint in the store.'),
        verifyBtn, result),
      h('section', { class: 'card', 'aria-labelledby': 'key-title' },
        h('h3', { id: 'key-title' }, 'Checkpoint signing key'),
        h('p', { class: 'muted' }, "Compare this fingerprint with the auditor's copy, obtained out of band (custodian audit public-key on the host): whoever controls this server controls this answer."),
        key),
      h('section', { class: 'card', 'aria-labelledby': 'export-title' },
        h('h3', { id: 'export-title' }, 'Export'),
        h('p', { class: 'muted' }, 'The trail with the filters of the Audit trail view. NDJSON carries hashes and signed checkpoints for custodian audit verify --file; CSV is for spreadsheets.'),
        filterNote,
        h('div', { class: 'actions' },
          h('button', { type: 'button', id: 'export-ndjson', onclick: () => download('ndjson') }, 'Export NDJSON'),
          h('button', { type: 'button', id: 'export-csv', class: 'secondary', onclick: () => download('csv') }, 'Export CSV')),
        exportStatus)));

  verifyBtn.addEventListener('click', async () => {
    verifyBtn.disabled = true;
    put(result, loading('Verifying…'));
    try {
      const r = await postJson('/v1/audit/verify');
      if (r.intact) {
        put(result, h('p', { class: 'verdict ok', id: 'verdict' },
          h('strong', {}, 'Intact: '),
          `${number(r.events)} events, ${number(r.checkpoints)} checkpoints`,
          ` (${number(r.chains)} chain${r.chains === 1 ? '' : 's'}).`));
      } else {
        const p = r.problem || {};
        put(result, h('div', { class: 'verdict bad', id: 'verdict', role: 'alert' },
          h('p', {}, h('strong', {}, 'Broken: '), `${p.kind}: ${KINDS[p.kind] || 'tampering detected'}.`),
          h('dl', { class: 'kv' },
            h('dt', {}, 'Instance'), h('dd', { id: 'broken-instance' }, p.instance),
            h('dt', {}, 'Event (seq)'), h('dd', { id: 'broken-seq' }, String(p.seq)),
            h('dt', {}, 'Kind'), h('dd', { id: 'broken-kind' }, p.kind),
            h('dt', {}, 'Detail'), h('dd', {}, h('code', {}, p.detail))),
          h('p', { class: 'muted small' }, `${number(r.events)} events verified intact before it.`)));
      }
    } catch (e) {
      put(result, errorBox(e, 'verify the trail'));
    } finally {
      verifyBtn.disabled = false;
    }
  });

  async function loadKey() {
    put(key, loading());
    try {
      const k = await getJson('/v1/audit/public-key');
      put(key, h('dl', { class: 'kv' },
        h('dt', {}, 'Fingerprint (key id)'), h('dd', {}, h('code', { id: 'key-id', class: 'fingerprint' }, k.key_id)),
        h('dt', {}, 'Instance'), h('dd', {}, k.instance),
        h('dt', {}, 'Public key (hex)'), h('dd', {}, h('code', { class: 'hash' }, k.hex))));
    } catch (e) {
      put(key, errorBox(e, 'read the public key'));
    }
  }

  async function download(format) {
    put(exportStatus, `Exporting ${format.toUpperCase()}…`);
    try {
      const response = await call('/v1/audit/export', { query: { ...currentFilter, format } });
      const blob = await response.blob();
      const disposition = response.headers.get('content-disposition') || '';
      const match = /filename="([A-Za-z0-9._-]+)"/.exec(disposition);
      const name = match ? match[1] : `custodian-audit.${format}`;
      const href = URL.createObjectURL(blob);
      const a = h('a', { href, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 60_000);
      put(exportStatus, `Saved ${name} (${number(blob.size)} bytes).`);
    } catch (e) {
      put(exportStatus, errorBox(e, 'export the trail'));
    }
  }

  return {
    show() {
      const active = Object.entries(currentFilter).filter(([, v]) => v !== undefined);
      put(filterNote, active.length === 0 ? 'Filter: none (the whole trail).' :
        `Filter: ${active.map(([k, v]) => `${k} = ${v}`).join(', ')}`);
      loadKey();
    },
  };
}

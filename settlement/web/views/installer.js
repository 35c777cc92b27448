// An installer's work: one-time enrollment codes for its customers, whether their gateways are
// online, the last reading of each meter, and why readings were refused. An installer key sees
// its customers' gateways and meters only (the API filters); an admin sees all.

import { query, seg } from '../api.js';
import { badge, field, fill, form, h, kw, kwh, loadInto, section, select, shortId, table, when } from '../dom.js';
import { throttled } from '../refresh.js';

export const title = 'Installer';

export function mount(root, { api, me, market }) {
  const customers = me.customers ?? null;
  const markets = (me.markets ?? []).map((m) => [m.id, m.name || m.id]);

  // ---- enrollment codes ----
  const issued = h('div', { id: 'new-code', 'aria-live': 'polite' });
  const codesBody = h('div');
  const loadCodes = () =>
    loadInto(codesBody, async () =>
      table(
        [
          { label: 'Code id', value: (c) => shortId(c.id) },
          { label: 'Owner', value: (c) => c.owner },
          { label: 'Market', value: (c) => c.market },
          { label: 'Issued', value: (c) => when(c.createdAt) },
          { label: 'Expires', value: (c) => when(c.expiresAt) },
          { label: 'Status', value: (c) => badge(c.status) },
          { label: 'Gateway', value: (c) => (c.gateway ? `${c.gateway} (${when(c.usedAt)})` : '') },
        ],
        await api.get(`/enrollment-codes${query({ limit: 100 })}`),
        'No codes issued yet.',
      ),
    );
  const codeForm = form(
    'code-form',
    [
      field('Customer account', customers ? select('owner', customers.map((c) => [c, c]), customers[0]) : h('input', { name: 'owner', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}' })),
      markets.length > 1 ? field('Market', select('market', markets, market)) : null,
      field('Valid for (hours)', h('input', { name: 'ttlHours', type: 'number', min: 1, max: 2160, value: 24 })),
    ],
    'Create code',
    async (v) => {
      const c = await api.post('/enrollment-codes', { owner: v.owner, ...(v.market || market ? { market: v.market || market } : {}), ...(v.ttlHours ? { ttlHours: Number(v.ttlHours) } : {}) });
      fill(
        issued,
        h(
          'div',
          { class: 'code-once' },
          h('p', {}, `Code for ${c.owner} (shown once; it works once, until ${when(c.expiresAt)}):`),
          h('code', { class: 'secret', id: 'issued-code' }, c.code),
          h('p', { class: 'muted' }, 'On the gateway: gtx gateway enroll --code <code> …'),
        ),
      );
      await loadCodes();
    },
  );

  // ---- gateways ----
  const gatewaysBody = h('div');
  const loadGateways = () =>
    loadInto(gatewaysBody, async () =>
      table(
        [
          { label: 'Gateway', value: (g) => g.id },
          { label: 'Owner', value: (g) => g.owner },
          { label: 'Status', value: (g) => badge(g.status) },
          { label: 'Last seen', value: (g) => (g.lastSeen ? when(g.lastSeen) : 'never') },
          { label: 'Meters', value: (g) => (Array.isArray(g.meters) ? g.meters.map((m) => (typeof m === 'string' ? m : m.id ?? m.meter)).join(', ') : '') },
        ],
        await api.get(`/gateways${query({ limit: 200 })}`),
        'No gateways yet.',
      ),
    );

  // ---- meters: last reading ----
  const metersBody = h('div');
  let meterIds = [];
  const loadMeters = () =>
    loadInto(metersBody, async () => {
      const meters = await api.get('/meters');
      meterIds = meters.map((m) => m.meter);
      refreshPicker();
      return table(
        [
          { label: 'Meter', value: (m) => m.meter },
          { label: 'Owner', value: (m) => m.owner },
          { label: 'Gateway', value: (m) => m.gateway },
          { label: 'Last reading', value: (m) => (m.lastReading ? `${when(m.lastReading.ts)} (seq ${m.lastReading.seq})` : 'none yet') },
          { label: 'Power', value: (m) => kw(m.lastReading?.powerW), num: true },
          { label: 'Import total', value: (m) => kwh(m.lastReading?.importWh), num: true },
          { label: 'Export total', value: (m) => kwh(m.lastReading?.exportWh), num: true },
        ],
        meters,
        'No meters yet.',
      );
    });

  // ---- rejections of one meter ----
  const rejectionsBody = h('div');
  const picker = h('select', { name: 'meter', id: 'rejections-meter' });
  const refreshPicker = () => {
    const current = picker.value;
    fill(picker, h('option', { value: '' }, 'choose a meter'), meterIds.map((id) => h('option', { value: id, selected: id === current }, id)));
  };
  const loadRejections = () =>
    picker.value
      ? loadInto(rejectionsBody, async () =>
          table(
            [
              { label: 'At', value: (r) => when(r.at) },
              { label: 'Reason', value: (r) => badge(r.reason) },
              { label: 'Detail', value: (r) => r.detail ?? '' },
              { label: 'Envelope', value: (r) => shortId(r.envelopeId) },
            ],
            await api.get(`/meters/${seg(picker.value)}/rejections${query({ limit: 50 })}`),
            'No rejections for this meter.',
          ),
        )
      : fill(rejectionsBody);
  picker.addEventListener('change', () => void loadRejections());

  fill(
    root,
    h('h1', {}, 'Installer'),
    customers ? h('p', { class: 'muted' }, `Customers: ${customers.join(', ')}`) : null,
    section('codes', 'Enrollment codes', codeForm, issued, codesBody),
    section('gateways', 'Gateways', gatewaysBody),
    section('meters', 'Meters and their last reading', metersBody),
    section('rejections', 'Rejected readings', field('Meter', picker), rejectionsBody),
  );
  void loadCodes();
  void loadGateways();
  void loadMeters();

  const reload = throttled(() => Promise.all([loadMeters(), loadGateways()]), 10_000);
  return {
    onEvent(name) {
      if (name === 'reading') reload();
    },
    destroy: () => reload.cancel(),
  };
}

// A utility's audit view: every meter with its readings and rejection reasons, a "Verify" that
// has the settlement re-check the meter's signature chain (as `gtx audit verify` does), and the
// market's metered supply and demand per interval.

import { query, seg } from '../api.js';
import { timeChart } from '../chart.js';
import { actionButton, badge, field, fill, h, kw, kwh, loadInto, message, section, select, shortId, table, when } from '../dom.js';
import { throttled } from '../refresh.js';

export const title = 'Utility';

export function mount(root, { api, me, market: first }) {
  let market = first;
  let chosen = null;
  const charts = [];

  // ---- meters ----
  const metersBody = h('div');
  const metersOut = h('p', { class: 'error', role: 'alert', hidden: true });
  const loadMeters = () =>
    loadInto(metersBody, async () =>
      table(
        [
          { label: 'Meter', value: (m) => m.meter },
          { label: 'Owner', value: (m) => m.owner },
          { label: 'Gateway', value: (m) => m.gateway },
          { label: 'Readings', value: (m) => String(m.readings ?? ''), num: true },
          { label: 'Last reading', value: (m) => (m.lastReading ? when(m.lastReading.ts) : 'none yet') },
          { label: 'Power', value: (m) => kw(m.lastReading?.powerW), num: true },
          {
            label: '',
            value: (m) =>
              h(
                'div',
                { class: 'row-actions' },
                actionButton('Details', () => choose(m.meter), metersOut),
                actionButton('Verify', () => verify(m.meter), metersOut),
              ),
          },
        ],
        await api.get('/meters'),
        'No meters yet.',
      ),
    );

  // ---- one meter: readings, rejections, verification ----
  const detailTitle = h('h3', { id: 'meter-detail-title' }, 'Choose a meter above.');
  const verifyBody = h('div', { id: 'verify-result', 'aria-live': 'polite' });
  const readingsBody = h('div');
  const rejectionsBody = h('div');

  async function choose(meter) {
    chosen = meter;
    detailTitle.textContent = `Meter ${meter}`;
    fill(verifyBody);
    await Promise.all([
      loadInto(readingsBody, async () =>
        table(
          [
            { label: 'Seq', value: (r) => String(r.seq), num: true },
            { label: 'Time', value: (r) => when(r.ts) },
            { label: 'Import total', value: (r) => kwh(r.importWh), num: true },
            { label: 'Export total', value: (r) => kwh(r.exportWh), num: true },
            { label: 'Power', value: (r) => kw(r.powerW), num: true },
            { label: 'Envelope', value: (r) => shortId(r.envelopeId) },
          ],
          await api.get(`/meters/${seg(meter)}/readings${query({ limit: 50 })}`),
          'No verified readings.',
        ),
      ),
      loadInto(rejectionsBody, async () =>
        table(
          [
            { label: 'At', value: (r) => when(r.at) },
            { label: 'Reason', value: (r) => badge(r.reason) },
            { label: 'Detail', value: (r) => r.detail ?? '' },
            { label: 'Envelope', value: (r) => shortId(r.envelopeId) },
          ],
          await api.get(`/meters/${seg(meter)}/rejections${query({ limit: 50 })}`),
          'No rejections: every envelope for this meter verified.',
        ),
      ),
    ]);
    document.getElementById('meter-detail')?.scrollIntoView({ block: 'start' });
  }

  async function verify(meter) {
    if (chosen !== meter) await choose(meter);
    fill(verifyBody, h('p', { class: 'muted' }, `Verifying ${meter}…`));
    try {
      const result = await api.post(`/meters/${seg(meter)}/verify`);
      fill(verifyBody, verdict(result));
    } catch (e) {
      fill(verifyBody);
      const out = h('p');
      message(out, e.message);
      verifyBody.append(out);
    }
  }

  // ---- supply and demand per interval ----
  const sdChart = h('div', { class: 'chart', id: 'supply-demand-chart' });
  const sdBody = h('div');
  const loadIntervals = () => {
    charts.splice(0).forEach((c) => c?.destroy());
    if (!market) return fill(sdBody, h('p', { class: 'empty' }, 'No market is configured.'));
    return loadInto(sdBody, async () => {
      const rows = await api.get(`/markets/${seg(market)}/intervals`);
      charts.push(
        timeChart(sdChart, {
          x: rows.map((r) => Date.parse(r.start)),
          series: [
            { label: 'supply (kWh)', values: rows.map((r) => r.supplyWh / 1000) },
            { label: 'demand (kWh)', values: rows.map((r) => r.demandWh / 1000) },
          ],
          yLabel: 'kWh',
        }),
      );
      return table(
        [
          { label: 'Interval', value: (r) => when(r.start) },
          { label: 'Supply', value: (r) => kwh(r.supplyWh), num: true },
          { label: 'Demand', value: (r) => kwh(r.demandWh), num: true },
          { label: 'Meters', value: (r) => String(r.meters), num: true },
          { label: 'Estimated', value: (r) => (r.estimated ? `yes (${kwh(r.estimatedSupplyWh)} / ${kwh(r.estimatedDemandWh)})` : 'no') },
        ],
        [...rows].reverse().slice(0, 24),
        'No metered energy in the last 24 hours.',
      );
    });
  };

  const markets = (me.markets ?? []).map((m) => [m.id, m.name || m.id]);
  const picker = markets.length > 1 ? select('market', markets, market) : null;
  picker?.addEventListener('change', () => {
    market = picker.value;
    void loadIntervals();
  });

  fill(
    root,
    h('h1', {}, 'Utility'),
    section('meters', 'Meters', metersOut, metersBody),
    section('meter-detail', 'Readings and rejections', detailTitle, verifyBody, h('h3', {}, 'Latest verified readings'), readingsBody, h('h3', {}, 'Rejections'), rejectionsBody),
    section('supply-demand', 'Supply and demand per interval (last 24 hours)', picker ? field('Market', picker) : null, sdChart, sdBody),
  );
  void loadMeters();
  void loadIntervals();

  const reload = throttled(loadMeters, 10_000);
  return {
    onEvent(name) {
      if (name === 'reading') reload();
    },
    destroy() {
      reload.cancel();
      charts.splice(0).forEach((c) => c?.destroy());
    },
  };
}

/**
 * The verification answer: its verdict first, then every plain field it has, as text (the
 * answer's exact shape is the API's; nothing here is rendered as markup).
 */
function verdict(result) {
  const ok = result?.ok === true || result?.result === 'PASS';
  const failed = result?.ok === false || result?.result === 'FAIL';
  const rows = Object.entries(result ?? {}).filter(([k, v]) => k !== 'ok' && k !== 'result' && v !== null && !(Array.isArray(v) && v.length === 0));
  const problem = result?.firstProblem;
  return h(
    'div',
    { class: `verdict ${ok ? 'pass' : failed ? 'fail' : ''}` },
    h('p', { class: 'big' }, ok ? 'PASS: the signature chain verifies' : failed ? 'FAIL: the chain does not verify' : 'Checked'),
    problem && typeof problem === 'object' ? h('p', { class: 'error' }, `First problem: ${problem.kind}${problem.seq === undefined ? '' : ` at seq ${problem.seq}`}: ${problem.detail}`) : null,
    h(
      'dl',
      { class: 'pairs' },
      rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v !== null && typeof v === 'object' ? JSON.stringify(v) : String(v))]),
    ),
  );
}

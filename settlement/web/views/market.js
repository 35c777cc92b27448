// The market for every role: the price signal's history and the auctions' results (clearing
// price and volume per delivery interval). Updated by the `price` and `auction` events.

import { query, seg } from '../api.js';
import { plotNumber, timeChart } from '../chart.js';
import { badge, field, fill, h, kwh, loadInto, section, select, table, when } from '../dom.js';
import { throttled } from '../refresh.js';

export const title = 'Market';

export function mount(root, { api, me, market: first }) {
  let market = first;
  const charts = [];
  const dropCharts = () => charts.splice(0).forEach((c) => c?.destroy());

  const priceFigure = h('div', { class: 'figures' });
  const priceChart = h('div', { class: 'chart', id: 'price-history-chart' });
  const priceTable = h('div');
  const auctionChart = h('div', { class: 'chart', id: 'auction-chart' });
  const auctionTable = h('div');

  const load = async () => {
    dropCharts();
    if (!market) {
      fill(priceFigure, h('p', { class: 'empty' }, 'No market is configured.'));
      return;
    }
    await Promise.all([
      loadInto(priceTable, async () => {
        const { current, history = [] } = await api.get(`/markets/${seg(market)}/price${query({ include_history: true, limit: 500 })}`);
        fill(
          priceFigure,
          h('p', { class: 'big', id: 'market-price' }, `${current.price} ${current.currency}/kWh`),
          h('p', { class: 'muted' }, `supply/demand ratio ${current.ratio} · computed ${when(current.computedAt)} · valid until ${when(current.validUntil)}`),
        );
        const oldestFirst = [...history].reverse();
        charts.push(
          timeChart(priceChart, {
            x: oldestFirst.map((p) => Date.parse(p.computedAt)),
            series: [{ label: `price (${current.currency}/kWh)`, values: oldestFirst.map((p) => plotNumber(p.price)), stepped: true }],
            yLabel: `${current.currency}/kWh`,
          }),
        );
        return table(
          [
            { label: 'Computed', value: (p) => when(p.computedAt) },
            { label: 'Price', value: (p) => `${p.price} ${p.currency}/kWh`, num: true },
            { label: 'Supply', value: (p) => kwh(p.supplyWh), num: true },
            { label: 'Demand', value: (p) => kwh(p.demandWh), num: true },
            { label: 'Ratio', value: (p) => String(p.ratio), num: true },
          ],
          history.slice(0, 24),
          'No price history yet.',
        );
      }),
      loadInto(auctionTable, async () => {
        const auctions = await api.get(`/markets/${seg(market)}/auctions${query({ limit: 96 })}`);
        const oldestFirst = [...auctions].reverse();
        charts.push(
          timeChart(auctionChart, {
            x: oldestFirst.map((a) => Date.parse(a.deliveryStart)),
            series: [
              { label: 'clearing price', values: oldestFirst.map((a) => plotNumber(a.clearingPrice)) },
              { label: 'volume (kWh)', values: oldestFirst.map((a) => plotNumber(a.volumeKwh)), bars: true },
            ],
          }),
        );
        return table(
          [
            { label: 'Delivery', value: (a) => when(a.deliveryStart) },
            { label: 'Clearing price', value: (a) => (a.clearingPrice === null ? badge('unmatched') : a.clearingPrice), num: true },
            { label: 'Volume', value: (a) => `${a.volumeKwh} kWh`, num: true },
            { label: 'Orders', value: (a) => String(a.orders), num: true },
            { label: 'Trades', value: (a) => String(a.trades), num: true },
            { label: 'Ran', value: (a) => when(a.ranAt) },
          ],
          auctions,
          'No auctions yet.',
        );
      }),
    ]);
  };

  const markets = (me.markets ?? []).map((m) => [m.id, m.name || m.id]);
  const picker =
    markets.length > 1
      ? field(
          'Market',
          Object.assign(select('market', markets, market), {
            onchange: (ev) => {
              market = ev.target.value;
              void load();
            },
          }),
        )
      : null;

  fill(
    root,
    h('h1', {}, 'Market'),
    picker,
    h('p', { class: 'muted' }, market ? `Market ${market}` : ''),
    section('price-history', 'Price signal', priceFigure, priceChart, priceTable),
    section('auctions', 'Auction results', h('p', { class: 'muted' }, 'Clearing price and matched volume per delivery interval.'), auctionChart, auctionTable),
  );
  void load();

  const reload = throttled(load, 2_000);
  return {
    onEvent(name, data) {
      if ((name === 'price' || name === 'auction') && data.market === market) reload();
    },
    destroy() {
      reload.cancel();
      dropCharts();
    },
  };
}

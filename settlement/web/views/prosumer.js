// A prosumer's home: live power and today's energy per meter, the price signal, orders and
// trades (with what each was settled against), credits, certificates, rewards, stake and votes.
// Every list is the key's own: the API answers a prosumer key with its account's data only.

import { query, seg } from '../api.js';
import { timeChart, plotNumber } from '../chart.js';
import { actionButton, badge, clock, field, fill, form, h, kw, kwh, amount, loadInto, section, select, startOfToday, table, when } from '../dom.js';
import { throttled } from '../refresh.js';

export const title = 'My home';

export function mount(root, { api, me, market: defaultMarket }) {
  const account = me.account;
  let market = defaultMarket;
  const markets = (me.markets ?? []).map((m) => [m.id, m.name || m.id]);
  const disposers = [];

  // ---- meters: live power from `reading` events, today's import/export from intervals ----
  const meterBody = h('div', { class: 'meters' }, h('p', { class: 'empty' }, 'Loading meters…'));
  /** meter id → its card's live parts; looked up by id, never by a selector built from data. */
  const cards = new Map();

  const todayOf = async (meter) => {
    const rows = await api.get(`/meters/${seg(meter)}/intervals${query({ from: startOfToday() })}`);
    return rows.reduce((a, r) => ({ importWh: a.importWh + r.importWh, exportWh: a.exportWh + r.exportWh }), { importWh: 0, exportWh: 0 });
  };
  const showToday = async (meter) => {
    const card = cards.get(meter);
    if (!card) return;
    try {
      const t = await todayOf(meter);
      card.imported.textContent = kwh(t.importWh);
      card.exported.textContent = kwh(t.exportWh);
    } catch (e) {
      card.imported.textContent = e.message;
    }
  };
  const showReading = (meter, r) => {
    const card = cards.get(meter);
    if (!card || !r) return;
    card.power.textContent = kw(r.powerW);
    card.direction.textContent = typeof r.powerW !== 'number' ? '' : r.powerW < 0 ? 'exporting' : r.powerW > 0 ? 'importing' : 'idle';
    card.at.textContent = r.ts ? `reading ${r.seq ?? ''} at ${clock(r.ts)}` : '';
  };

  const loadMeters = async () => {
    const list = await api.get('/meters');
    const mine = list.filter((m) => m.owner === undefined || m.owner === account);
    if (!market) market = mine.find((m) => typeof m.market === 'string')?.market ?? market;
    cards.clear();
    fill(
      meterBody,
      mine.length
        ? mine.map((m) => {
            const card = {
              power: h('span', { class: 'power', 'data-role': 'power' }, '—'),
              direction: h('span', { class: 'direction' }),
              at: h('span', { class: 'muted' }),
              imported: h('span', { 'data-role': 'import-today' }, '…'),
              exported: h('span', { 'data-role': 'export-today' }, '…'),
              refresh: throttled(() => showToday(m.meter), 10_000),
            };
            cards.set(m.meter, card);
            showReading(m.meter, m.lastReading);
            void showToday(m.meter);
            return h(
              'article',
              { class: 'meter', 'data-meter': m.meter },
              h('h3', {}, m.meter),
              h('p', { class: 'now' }, card.power, ' ', card.direction),
              h('p', { class: 'muted' }, card.at),
              h('dl', { class: 'pairs' }, h('dt', {}, 'Imported today'), h('dd', {}, card.imported), h('dt', {}, 'Exported today'), h('dd', {}, card.exported)),
            );
          })
        : h('p', { class: 'empty' }, 'No meters on this account yet: an installer enrolls your gateway.'),
    );
  };
  disposers.push(() => cards.forEach((c) => c.refresh.cancel()));

  // ---- price signal and the day's chart ----
  const priceNow = h('div', { class: 'figures' });
  const priceChart = h('div', { class: 'chart', id: 'price-chart' });
  let chart = null;
  /** Today's signals, oldest first: loaded once, then extended by `price` events (no refetch of the day). */
  let today = [];
  const showSignal = (s) =>
    fill(
      priceNow,
      h('p', { class: 'big', id: 'price-now' }, `${s.price} ${s.currency}/kWh`),
      h('p', { class: 'muted' }, `${market} · supply ${kwh(s.supplyWh)} / demand ${kwh(s.demandWh)} · valid until ${clock(s.validUntil)}`),
    );
  const drawDay = (currency) => {
    chart?.destroy();
    chart = timeChart(priceChart, {
      x: today.map((p) => Date.parse(p.computedAt)),
      series: [{ label: `price (${currency}/kWh)`, values: today.map((p) => plotNumber(p.price)), stepped: true }],
      yLabel: `${currency}/kWh`,
    });
  };
  const loadPrice = async () => {
    if (!market) return fill(priceNow, h('p', { class: 'empty' }, 'No market is configured.'));
    try {
      // A day of signals: 288 at the default 5-minute update; 1000 is the API's most.
      const { current, history = [] } = await api.get(`/markets/${seg(market)}/price${query({ include_history: true, limit: 1000 })}`);
      showSignal(current);
      const since = Date.parse(startOfToday());
      today = history.filter((p) => Date.parse(p.computedAt) >= since).reverse();
      drawDay(current.currency);
    } catch (e) {
      fill(priceNow, h('p', { class: 'error' }, e.message));
    }
  };
  const onPrice = (s) => {
    showSignal(s);
    const since = Date.parse(startOfToday());
    today = [...today.filter((p) => Date.parse(p.computedAt) >= since), { computedAt: s.computedAt, price: s.price }];
    drawDay(s.currency);
  };
  disposers.push(() => chart?.destroy());

  // ---- orders: place, list, cancel ----
  const ordersBody = h('div');
  const ordersOut = h('p', { class: 'error', role: 'alert', hidden: true });
  const loadOrders = () =>
    loadInto(ordersBody, async () => {
      const orders = await api.get(`/orders${query({ limit: 50 })}`);
      return table(
        [
          { label: 'Placed', value: (o) => when(o.createdAt) },
          { label: 'Side', value: (o) => o.side },
          { label: 'Energy', value: (o) => `${o.energyKwh} kWh`, num: true },
          { label: 'Limit', value: (o) => `${o.limitPrice} ${o.currency}/kWh`, num: true },
          { label: 'Delivery', value: (o) => when(o.deliveryStart) },
          { label: 'Status', value: (o) => badge(o.status) },
          { label: 'Filled', value: (o) => `${o.filledKwh} kWh`, num: true },
          { label: 'Escrow', value: (o) => `${o.escrow} ${o.currency}`, num: true },
          {
            label: '',
            value: (o) =>
              o.status === 'open'
                ? actionButton('Cancel', async () => {
                    await api.del(`/orders/${seg(o.id)}`);
                    await Promise.all([loadOrders(), loadBalances()]);
                  }, ordersOut)
                : '',
          },
        ],
        orders,
        'No orders yet.',
      );
    });
  const orderForm = form(
    'order-form',
    [
      markets.length > 1 ? field('Market', select('market', markets, market)) : null,
      field('Side', select('side', [['sell', 'Sell'], ['buy', 'Buy']], 'sell')),
      field('Energy (kWh)', h('input', { name: 'energyKwh', required: true, inputmode: 'decimal', pattern: '(0|[1-9][0-9]*)(\\.[0-9]{1,3})?', placeholder: '1.5' })),
      field('Limit price (per kWh, blank: the current price)', h('input', { name: 'limitPrice', inputmode: 'decimal', pattern: '(0|[1-9][0-9]*)(\\.[0-9]+)?', placeholder: 'current' })),
    ],
    'Place order',
    async (v, f) => {
      const o = await api.post('/orders', { market: v.market || market, side: v.side, energyKwh: v.energyKwh, ...(v.limitPrice ? { limitPrice: v.limitPrice } : {}) });
      f.reset();
      await Promise.all([loadOrders(), loadBalances()]);
      return `Order placed: ${o.side} ${o.energyKwh} kWh at up to ${o.limitPrice} ${o.currency}/kWh for delivery at ${clock(o.deliveryStart)}.`;
    },
  );

  // ---- trades and how each was settled against the meters ----
  const tradesBody = h('div');
  const settledText = (t) => {
    const d = t.delivery;
    if (!d) return 'awaiting delivery';
    const mineSide = t.seller === account ? 'seller' : 'buyer';
    const metered = mineSide === 'seller' ? d.sellerMeteredKwh : d.buyerMeteredKwh;
    const short = mineSide === 'seller' ? d.sellerShortKwh : d.buyerShortKwh;
    return `settled ${when(d.settledAt)}: your meter ${mineSide === 'seller' ? 'exported' : 'imported'} ${metered} kWh, short ${short} kWh (imbalance price ${d.imbalancePrice} ${t.currency}/kWh)`;
  };
  const loadTrades = () =>
    loadInto(tradesBody, async () => {
      const trades = await api.get(`/trades${query({ limit: 50 })}`);
      return table(
        [
          { label: 'Delivery', value: (t) => when(t.deliveryStart) },
          { label: 'You', value: (t) => (t.seller === account ? (t.buyer === account ? 'sold and bought' : 'sold') : 'bought') },
          { label: 'Energy', value: (t) => `${t.energyKwh} kWh`, num: true },
          { label: 'Price', value: (t) => `${t.price} ${t.currency}/kWh`, num: true },
          { label: 'Value', value: (t) => `${t.value} ${t.currency}`, num: true },
          { label: 'Settlement', value: settledText },
        ],
        trades,
        'No trades yet: they appear when an auction matches your orders.',
      );
    });

  // ---- credits ----
  const balancesBody = h('div');
  const loadBalances = () =>
    loadInto(balancesBody, async () => {
      const balances = await api.get('/balances');
      return balances.length
        ? h('dl', { class: 'pairs', id: 'balance-list' }, balances.map((b) => [h('dt', {}, b.currency), h('dd', { 'data-currency': b.currency }, b.balance)]))
        : h('p', { class: 'empty' }, 'No credits yet.');
    });

  // ---- certificates: own (list for sale, withdraw, retire) and the marketplace (buy) ----
  const recsBody = h('div');
  const marketBody = h('div');
  const recsOut = h('p', { class: 'error', role: 'alert', hidden: true });
  const currencies = [...new Set(['THB', 'USD', 'EUR'])].map((c) => [c, c]);
  const recActions = (r) => {
    if (r.status === 'for_sale') {
      return actionButton('Withdraw', async () => {
        await api.del(`/recs/${seg(r.id)}/list`);
        await loadRecs();
      }, recsOut);
    }
    if (r.status !== 'active') return '';
    const sell = form(
      null,
      [field('Price per kWh', h('input', { name: 'pricePerKwh', required: true, inputmode: 'decimal', pattern: '(0|[1-9][0-9]*)(\\.[0-9]{1,2})?', placeholder: '0.05' })), field('Currency', select('currency', currencies, 'THB'))],
      'List for sale',
      async (v) => {
        await api.post(`/recs/${seg(r.id)}/list`, { pricePerKwh: v.pricePerKwh, currency: v.currency });
        await loadRecs();
      },
    );
    const retire = form(
      null,
      [
        field('Reason', h('input', { name: 'reason', required: true, maxlength: 200, placeholder: 'green tariff 2026' })),
        field('Beneficiary', h('input', { name: 'beneficiary', required: true, maxlength: 200 })),
        field('Wh (blank: all)', h('input', { name: 'volumeWh', inputmode: 'numeric', pattern: '[1-9][0-9]*' })),
      ],
      'Retire',
      async (v) => {
        await api.post(`/recs/${seg(r.id)}/retire`, { reason: v.reason, beneficiary: v.beneficiary, ...(v.volumeWh ? { volumeWh: Number(v.volumeWh) } : {}) });
        await loadRecs();
      },
    );
    return h('div', { class: 'row-actions' }, h('details', {}, h('summary', {}, 'Sell…'), sell), h('details', {}, h('summary', {}, 'Retire…'), retire));
  };
  const recColumns = [
    { label: 'Period', value: (r) => `${when(r.periodStart)}–${clock(r.periodEnd)}` },
    { label: 'Source', value: (r) => r.energySource },
    { label: 'Generator', value: (r) => r.generator?.meter },
    { label: 'Energy', value: (r) => kwh(r.volumeWh), num: true },
  ];
  const loadRecs = () =>
    Promise.all([
      loadInto(recsBody, async () =>
        table(
          [
            ...recColumns,
            { label: 'Status', value: (r) => badge(r.status) },
            { label: 'Retired for', value: (r) => (r.retirement ? `${r.retirement.beneficiary}: ${r.retirement.reason}` : r.listing ? `listed at ${r.listing.pricePerKwh} ${r.listing.currency}/kWh` : '') },
            { label: '', value: recActions },
          ],
          await api.get(`/recs${query({ limit: 100 })}`),
          'No certificates yet: they are minted hourly from your verified export.',
        ),
      ),
      loadInto(marketBody, async () =>
        table(
          [
            ...recColumns,
            { label: 'Seller', value: (r) => r.owner },
            { label: 'Price', value: (r) => (r.listing ? `${r.listing.pricePerKwh} ${r.listing.currency}/kWh` : '') },
            {
              label: '',
              value: (r) =>
                r.owner === account
                  ? 'yours'
                  : actionButton('Buy', async () => {
                      await api.post(`/recs/${seg(r.id)}/purchase`);
                      await Promise.all([loadRecs(), loadBalances()]);
                    }, recsOut),
            },
          ],
          await api.get(`/recs/marketplace${query({ limit: 50 })}`),
          'Nothing for sale right now.',
        ),
      ),
    ]);

  // ---- rewards ----
  const rewardsBody = h('div');
  const loadRewards = () =>
    loadInto(rewardsBody, async () =>
      table(
        [
          { label: 'Day', value: (r) => r.day },
          { label: 'Meter', value: (r) => r.meter },
          { label: 'Saved', value: (r) => kwh(r.savedWh), num: true },
          { label: 'Paid', value: (r) => `${amount(r.amount)} NRG`, num: true },
        ],
        await api.get(`/rewards${query({ limit: 30 })}`),
        'No rewards yet: a day below your baseline earns NRG.',
      ),
    );

  // ---- stake and votes ----
  const powerBody = h('div');
  const proposalsBody = h('div');
  const voteOut = h('p', { class: 'error', role: 'alert', hidden: true });
  const loadGovernance = () =>
    Promise.all([
      loadInto(powerBody, async () => {
        const p = await api.get(`/governance/voting-power/${seg(account)}`);
        return [
          h('p', {}, 'Voting power ', h('strong', { id: 'voting-power' }, `${amount(p.votingPower)} NRG`), ` of ${amount(p.totalVotingPower)} NRG in total`),
          table(
            [
              { label: 'Staked', value: (s) => `${amount(s.amount)} NRG`, num: true },
              { label: 'Lock', value: (s) => `${s.lockDays} days (×${s.multiplier})` },
              { label: 'Unlocks', value: (s) => when(s.unlocksAt) },
              { label: 'Status', value: (s) => (s.unstakedAt ? 'returned' : 'staked') },
            ],
            p.stakes,
            'No stakes.',
          ),
        ];
      }),
      loadInto(proposalsBody, async () =>
        table(
          [
            { label: 'Proposal', value: (p) => p.title },
            { label: 'Change', value: (p) => `${p.market}: ${p.parameter} = ${p.value}` },
            { label: 'Status', value: (p) => badge(p.status) },
            { label: 'Tally', value: (p) => (p.tally ? `yes ${p.tally.yes} · no ${p.tally.no} · abstain ${p.tally.abstain}` : '') },
            { label: 'Voting ends', value: (p) => when(p.votingEndsAt) },
            {
              label: '',
              value: (p) =>
                p.status === 'active'
                  ? h(
                      'div',
                      { class: 'row-actions' },
                      ['yes', 'no', 'abstain'].map((choice) =>
                        actionButton(choice, async () => {
                          await api.post('/governance/vote', { proposal: p.id, choice });
                          await loadGovernance();
                        }, voteOut),
                      ),
                    )
                  : '',
            },
          ],
          await api.optional(`/governance/proposals${query({ limit: 20 })}`, []),
          'No proposals.',
        ),
      ),
    ]);
  const stakeForm = form(
    'stake-form',
    [
      field('NRG to stake', h('input', { name: 'amount', required: true, inputmode: 'decimal', pattern: '(0|[1-9][0-9]*)(\\.[0-9]{1,18})?' })),
      field('Lock (days)', h('input', { name: 'lockDays', required: true, type: 'number', min: 0, max: 1461, value: 30 })),
    ],
    'Stake',
    async (v, f) => {
      const s = await api.post('/governance/stake', { amount: v.amount, lockDays: Number(v.lockDays) });
      f.reset();
      await Promise.all([loadGovernance(), loadBalances()]);
      return `Staked ${amount(s.amount)} NRG: ${amount(s.votingPower)} voting power until ${when(s.unlocksAt)}.`;
    },
  );

  fill(
    root,
    h('h1', {}, 'My home'),
    h('p', { class: 'muted' }, 'Account ', h('strong', {}, account ?? '—')),
    h('div', { class: 'grid' }, section('live-power', 'Meters now', meterBody), section('price', 'Price signal', priceNow, priceChart)),
    section('orders', 'Orders', orderForm, ordersOut, ordersBody),
    section('trades', 'Trades', tradesBody),
    h('div', { class: 'grid' }, section('balances', 'Credits', balancesBody), section('rewards', 'Rewards', rewardsBody)),
    section('certificates', 'Certificates', recsOut, h('h3', {}, 'Yours'), recsBody, h('h3', {}, 'Marketplace'), marketBody),
    section('governance', 'Stake and votes', stakeForm, powerBody, h('h3', {}, 'Proposals'), voteOut, proposalsBody),
  );

  void loadMeters()
    .catch((e) => fill(meterBody, h('p', { class: 'error' }, e.message)))
    .then(loadPrice);
  void loadOrders();
  void loadTrades();
  void loadBalances();
  void loadRecs();
  void loadRewards();
  void loadGovernance();

  const reloadMarket = throttled(() => Promise.all([loadOrders(), loadTrades(), loadBalances()]), 2_000);
  const reloadRecs = throttled(loadRecs, 2_000);
  const reloadMeters = throttled(() => loadMeters().catch(() => undefined), 10_000);
  disposers.push(() => [reloadMarket, reloadRecs, reloadMeters].forEach((t) => t.cancel()));

  return {
    onEvent(name, data) {
      if (name === 'reading') {
        const card = cards.get(data.meter);
        if (!card) return reloadMeters(); // a meter enrolled since the page loaded
        showReading(data.meter, data);
        card.refresh();
      } else if (name === 'price' && data.market === market) onPrice(data);
      else if (name === 'trade' || name === 'settlement' || name === 'auction') reloadMarket();
      else if (name === 'certificate') reloadRecs();
    },
    destroy: () => disposers.forEach((d) => d()),
  };
}

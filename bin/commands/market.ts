import { readFileSync } from 'node:fs';
import type { SettlementConfig } from '../../settlement/config.ts';
import { clearAuction, fillList, type BookOrder } from '../../settlement/market/clearing.ts';
import { DomainError } from '../../settlement/domain-error.ts';
import { MarketService } from '../../settlement/market/market.ts';
import { MINOR_DIGITS, formatAmount, formatEnergyKwh, formatPrice, parseAmount, parseEnergyKwh, scaledFromNumber } from '../../settlement/market/money.ts';
import { indicativePrice } from '../../settlement/market/pricing.ts';
import { orderId, type Currency } from '../../settlement/market/types.ts';
import type { MarketId } from '../../settlement/registry/registry.ts';
import { CliError, command, parseFlags, required, runSubcommand, UsageError, type Command } from '../args.ts';
import { openExistingLedger, settlementConfigFrom } from './settlement.ts';

/**
 * `gtx market …`: check the pricing formula and the clearing rule without any ledger, and the
 * admin's credit and auction commands on the configured ledger (docs/market.md).
 */
const CONFIG = '  --config FILE   settlement config (default: config/settlement.toml if present, else the defaults)';

const PRICE = command(
  'market price',
  `gtx market price --supply WH --demand WH [--market ID] [--config FILE]
      the indicative price for this metered supply and demand, as JSON, touching no ledger:
      p_balance + p_con · (2/π) · atan(k · ln(demand/supply)), ratio clamped by min_ratio
${CONFIG}`,
  { supply: { type: 'string' }, demand: { type: 'string' }, market: { type: 'string' }, config: { type: 'string' } },
);
const CLEAR = command(
  'market clear',
  `gtx market clear --book FILE [--config FILE]
      clears a book as the auction does (uniform price, midpoint of the crossing interval,
      price-time priority) and prints {"volume", "price", "trades"} as JSON, touching no ledger.
      FILE (- for stdin): {"bids": [[price, kWh], …], "asks": [[price, kWh], …]}, prices in the
      default currency per kWh (4.5 or "4.50"), kWh with up to 3 decimals; earlier entries have
      time priority. Trades name bids and asks by their index in the file.
${CONFIG}`,
  { book: { type: 'string' }, config: { type: 'string' } },
);
const DEPOSIT = command(
  'market deposit',
  `gtx market deposit|withdraw --account ID --amount DECIMAL [--currency THB|USD|EUR] [--memo TEXT] [--config FILE]
      credits put into (or taken out of) an account's balance by an admin, as a posting against
      the issuance account; prints the new balance
${CONFIG}`,
  { account: { type: 'string' }, amount: { type: 'string' }, currency: { type: 'string' }, memo: { type: 'string' }, config: { type: 'string' } },
);
const WITHDRAW = command('market withdraw', DEPOSIT.usage, DEPOSIT.options);
const BALANCES = command(
  'market balances',
  `gtx market balances [--account ID] [--config FILE]
      balances per account and currency (system accounts too without --account)
${CONFIG}`,
  { account: { type: 'string' }, config: { type: 'string' } },
);
const AUCTION = command(
  'market auction',
  `gtx market auction --market ID [--at ISO] [--min-volume KWH] [--max-price-deviation F] [--config FILE]
      runs one auction now (ScheduleAuctionCommand): the one held at boundary --at (default: the
      current interval's start), which clears the delivery interval one interval later; the
      overrides apply to this run's book only
${CONFIG}`,
  { market: { type: 'string' }, at: { type: 'string' }, 'min-volume': { type: 'string' }, 'max-price-deviation': { type: 'string' }, config: { type: 'string' } },
);
const CHECK = command(
  'market check',
  `gtx market check [--config FILE]
      checks the money ledger from its rows: every currency's postings sum to zero, every balance
      equals its postings, no owner, escrow or fee account is negative. Exit 0 sound, 1 not
${CONFIG}`,
  { config: { type: 'string' } },
);

const MARKET = {
  name: 'market',
  usage: [PRICE, CLEAR, DEPOSIT, BALANCES, AUCTION, CHECK].map((c) => c.usage.split('\n')[0]).join('\n') + '\n\n  gtx market COMMAND --help shows a command\'s options.',
};

export async function run(argv: string[]): Promise<void> {
  return runSubcommand(MARKET, argv, {
    price,
    clear,
    deposit: (rest) => move('deposit', rest),
    withdraw: (rest) => move('withdraw', rest),
    balances,
    auction,
    check,
  });
}

function wh(value: string | undefined, flag: string, cmd: Command): number {
  const v = required(value, flag, cmd);
  if (!/^(0|[1-9][0-9]*)$/.test(v) || !Number.isSafeInteger(Number(v))) throw new UsageError(`${flag} must be a whole number of Wh, got "${v}"`, cmd.name);
  return Number(v);
}

function marketOf(cfg: SettlementConfig, id: string | undefined, cmd: Command) {
  const m = id === undefined ? cfg.markets[0] : cfg.markets.find((x) => x.id === id);
  if (!m) throw new UsageError(`no market ${id} in the config; markets: ${cfg.markets.map((x) => x.id).join(', ')}`, cmd.name);
  return m;
}

async function price(argv: string[]): Promise<void> {
  const f = parseFlags(argv, PRICE);
  const supply = wh(f.supply, '--supply', PRICE);
  const demand = wh(f.demand, '--demand', PRICE);
  const m = marketOf(settlementConfigFrom(f.config), f.market, PRICE);
  const p = indicativePrice(supply, demand, m.rules.pricing);
  const c = m.rules.currency;
  console.log(JSON.stringify({ market: m.id, supply_wh: supply, demand_wh: demand, ratio: p.ratio, price: formatPrice(p.price, c), currency: c, unit: `${c}/kWh` }));
}

async function clear(argv: string[]): Promise<void> {
  const f = parseFlags(argv, CLEAR);
  const file = required(f.book, '--book', CLEAR);
  const currency = settlementConfigFrom(f.config).credits.defaultCurrency;
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file === '-' ? 0 : file, 'utf8'));
  } catch (e) {
    throw new CliError(`${file === '-' ? 'stdin' : file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not JSON (${(e as Error).message})`}`);
  }
  const orders = bookOrders(doc, currency);
  const r = clearAuction(orders);
  const index = (id: string) => Number(id.slice(4));
  console.log(
    JSON.stringify({
      volume: formatEnergyKwh(r.volumeWh),
      price: r.price === null ? null : formatPrice(r.price, currency),
      currency,
      trades: fillList(orders, r).map((x) => ({ bid: index(x.buy), ask: index(x.sell), kwh: formatEnergyKwh(x.energyWh) })),
    }),
  );
}

/** The book file's entries as orders, with a message naming the entry that is wrong. */
function bookOrders(doc: unknown, currency: Currency): BookOrder[] {
  const bad = (where: string, why: string): never => {
    throw new CliError(`book ${where}: ${why}; expected {"bids": [[price, kWh], …], "asks": [[price, kWh], …]}`);
  };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) bad('', 'not an object');
  const orders: BookOrder[] = [];
  let seq = 0;
  for (const side of ['bids', 'asks'] as const) {
    const list = (doc as Record<string, unknown>)[side] ?? [];
    if (!Array.isArray(list)) bad(side, 'not a list');
    (list as unknown[]).forEach((entry, i) => {
      const where = `${side}[${i}]`;
      if (!Array.isArray(entry) || entry.length !== 2) return bad(where, 'not a [price, kWh] pair');
      const [p, e] = entry as [unknown, unknown];
      if ((typeof p !== 'number' && typeof p !== 'string') || (typeof e !== 'number' && typeof e !== 'string')) return bad(where, 'price and kWh must be numbers or decimal strings');
      try {
        const limit = typeof p === 'number' ? scaledFromNumber(p, MINOR_DIGITS[currency], 'price') : parseAmount(p, currency);
        if (limit < 0n) throw new RangeError('price must not be negative');
        orders.push({ id: orderId(`${side === 'bids' ? 'bid' : 'ask'}-${i}`), side: side === 'bids' ? 'buy' : 'sell', energyWh: parseEnergyKwh(e), limit, seq: seq++ });
      } catch (err) {
        bad(where, (err as Error).message);
      }
    });
  }
  return orders;
}

async function move(kind: 'deposit' | 'withdraw', argv: string[]): Promise<void> {
  const cmd = kind === 'deposit' ? DEPOSIT : WITHDRAW;
  const f = parseFlags(argv, cmd);
  const account = required(f.account, '--account', cmd);
  const cfg = settlementConfigFrom(f.config);
  const currency = (f.currency ?? cfg.credits.defaultCurrency) as Currency;
  if (!cfg.credits.currencies.includes(currency)) throw new UsageError(`--currency must be one of ${cfg.credits.currencies.join(', ')}`, cmd.name);
  let amount: bigint;
  try {
    amount = parseAmount(required(f.amount, '--amount', cmd), currency);
  } catch (e) {
    throw new UsageError(`--amount: ${(e as Error).message}`, cmd.name);
  }
  await withMarket(cfg, cmd, async (market) => {
    const balance = kind === 'deposit' ? await market.deposit(account, currency, amount, f.memo ?? '') : await market.withdraw(account, currency, amount, f.memo ?? '');
    console.log(`${account} ${formatAmount(balance, currency)} ${currency}`);
  });
}

async function balances(argv: string[]): Promise<void> {
  const f = parseFlags(argv, BALANCES);
  await withMarket(settlementConfigFrom(f.config), BALANCES, async (market) => {
    const rows = await market.money.balances(f.account);
    if (rows.length === 0) console.error(f.account ? `no balances for ${f.account}` : 'no balances yet');
    for (const b of rows) console.log(`${b.account}\t${formatAmount(b.balance, b.currency)}`);
  });
}

async function auction(argv: string[]): Promise<void> {
  const f = parseFlags(argv, AUCTION);
  const id = required(f.market, '--market', AUCTION);
  const cfg = settlementConfigFrom(f.config);
  marketOf(cfg, id, AUCTION);
  const at = f.at === undefined ? undefined : Date.parse(f.at);
  if (at !== undefined && (!Number.isFinite(at) || !/(Z|[+-]\d{2}:\d{2})$/.test(f.at!))) throw new UsageError(`--at must be a date-time with a zone, like 2026-11-30T03:30:00Z`, AUCTION.name);
  const overrides: { minVolumeWh?: number; maxPriceDeviationPpm?: number } = {};
  try {
    if (f['min-volume'] !== undefined) overrides.minVolumeWh = parseEnergyKwh(f['min-volume']);
  } catch (e) {
    throw new UsageError(`--min-volume: ${(e as Error).message}`, AUCTION.name);
  }
  if (f['max-price-deviation'] !== undefined) {
    const d = Number(f['max-price-deviation']);
    if (!(d >= 0 && d <= 1)) throw new UsageError('--max-price-deviation must be a fraction from 0 to 1', AUCTION.name);
    overrides.maxPriceDeviationPpm = Math.round(d * 1e6);
  }
  await withMarket(cfg, AUCTION, async (market) => {
    const r = await market.runAuction(id, at, overrides);
    if (!r) throw new CliError('that delivery interval was auctioned already (GET /api/v1/markets/{market}/auctions lists them)');
    const c = cfg.markets.find((m) => m.id === id)!.rules.currency;
    const a = r.auction;
    console.log(
      JSON.stringify({
        auction: a.id,
        delivery_start: new Date(a.deliveryStartMs).toISOString(),
        clearing_price: a.clearingPrice === null ? null : formatPrice(a.clearingPrice, c),
        volume_kwh: formatEnergyKwh(a.volumeWh),
        orders: a.orders,
        trades: a.trades,
      }),
    );
  });
}

async function check(argv: string[]): Promise<void> {
  const f = parseFlags(argv, CHECK);
  await withMarket(settlementConfigFrom(f.config), CHECK, async (market) => {
    const problems = await market.money.check();
    for (const p of problems) console.log(p);
    console.log(problems.length === 0 ? 'money ledger sound: every currency sums to zero, balances match their postings' : `${problems.length} problems`);
    if (problems.length) process.exitCode = 1;
  });
}

async function withMarket(cfg: SettlementConfig, cmd: Command, fn: (m: MarketService) => Promise<void>): Promise<void> {
  const ledger = await openExistingLedger(cfg, cmd.name);
  try {
    for (const m of cfg.markets) if (!(await ledger.getMarket(m.id))) await ledger.putMarket({ id: m.id as MarketId, name: m.name, timeZone: m.timeZone, intervalMinutes: m.intervalMinutes });
    const market = new MarketService(ledger, { rules: (id) => cfg.markets.find((m) => m.id === id)?.rules, credits: cfg.credits, now: Date.now });
    await fn(market);
  } catch (e) {
    if (e instanceof DomainError) throw new CliError(e.message);
    throw e;
  } finally {
    await ledger.close();
  }
}

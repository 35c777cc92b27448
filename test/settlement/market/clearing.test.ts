import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clearAuction as clearColumns, fillList, filledMap, MAX_LIMIT, type BookOrder, type Fill } from '../../../settlement/market/clearing.ts';

/** The result with its fills and filled energy as objects keyed by order id, as the checks below read them. */
type ClearingResult = Omit<ReturnType<typeof clearColumns>, 'fills' | 'filledWh'> & { fills: Fill[]; filledWh: Map<OrderId, number> };
function clearAuction(orders: readonly BookOrder[]): ClearingResult {
  const r = clearColumns(orders);
  return { ...r, fills: fillList(orders, r), filledWh: filledMap(orders, r) };
}
import { orderId, type OrderId, type Side } from '../../../settlement/market/types.ts';

// ---------------------------------------------------------------------------------------------
// Helpers

let nextSeq = 0;
/** A book order; seq defaults to creation order, so books read in the order they are written. */
function order(id: string, side: Side, energyWh: number, limit: number | bigint, seq = nextSeq++): BookOrder {
  return { id: orderId(id), side, energyWh, limit: BigInt(limit), seq };
}
const bid = (id: string, energyWh: number, limit: number | bigint, seq?: number) => order(id, 'buy', energyWh, limit, seq);
const ask = (id: string, energyWh: number, limit: number | bigint, seq?: number) => order(id, 'sell', energyWh, limit, seq);
const fill = (buy: string, sell: string, energyWh: number): Fill => ({ buy: orderId(buy), sell: orderId(sell), energyWh });
const filled = (entries: Record<string, number>) => new Map(Object.entries(entries).map(([id, wh]) => [orderId(id), wh]));

function expectNoTrade(result: ClearingResult): void {
  expect(result).toEqual({ volumeWh: 0, price: null, priceRange: null, fills: [], filledWh: new Map() });
}

// ---------------------------------------------------------------------------------------------
// Hand-worked books

describe('clearAuction: hand-worked books', () => {
  it('clears a crossing book at the midpoint of the volume-maximising interval', () => {
    // D(p): p <= 300: 400 | 301..400: 300 | 401..500: 100 | > 500: 0
    // S(p): p < 250: 0 | 250..349: 150 | 350..449: 250 | >= 450: 450
    // min(D, S): 250..349: 150 | 350..400: 250 | 401..500: 100  =>  Q* = 250 on [350, 400], price 375
    const result = clearAuction([
      bid('b1', 100, 500),
      bid('b2', 200, 400),
      bid('b3', 100, 300),
      ask('a1', 150, 250),
      ask('a2', 100, 350),
      ask('a3', 200, 450),
    ]);
    expect(result.volumeWh).toBe(250);
    expect(result.priceRange).toEqual({ low: 350n, high: 400n });
    expect(result.price).toBe(375n);
    // b1 (500) fills first, b2 (400) is the marginal bid; a1 (250) then a2 (350).
    expect(result.fills).toEqual([fill('b1', 'a1', 100), fill('b2', 'a1', 50), fill('b2', 'a2', 100)]);
    expect(result.filledWh).toEqual(filled({ b1: 100, b2: 150, a1: 150, a2: 100 }));
  });

  it('does not trade when the curves do not cross', () => {
    expectNoTrade(clearAuction([bid('b', 100, 300), ask('a', 100, 400)]));
  });

  it('does not trade when all asks are above all bids', () => {
    expectNoTrade(clearAuction([bid('b1', 100, 100), bid('b2', 500, 200), ask('a1', 100, 300), ask('a2', 50, 400)]));
  });

  it('does not trade with a single order, one side only, or nothing', () => {
    expectNoTrade(clearAuction([bid('b', 100, 300)]));
    expectNoTrade(clearAuction([ask('a', 100, 300)]));
    expectNoTrade(clearAuction([bid('b1', 100, 300), bid('b2', 100, 400)]));
    expectNoTrade(clearAuction([ask('a1', 100, 300), ask('a2', 100, 0)]));
    expectNoTrade(clearAuction([]));
  });

  it('takes the midpoint of a flat segment where several prices maximise volume', () => {
    // Q* = 100 for every p in [300, 500].
    const result = clearAuction([bid('b', 100, 500), ask('a', 100, 300)]);
    expect(result).toMatchObject({ volumeWh: 100, price: 400n, priceRange: { low: 300n, high: 500n } });
    expect(result.fills).toEqual([fill('b', 'a', 100)]);
  });

  it('rounds the midpoint down to a whole minor unit', () => {
    const result = clearAuction([bid('b', 100, 301), ask('a', 100, 300)]);
    expect(result).toMatchObject({ volumeWh: 100, price: 300n, priceRange: { low: 300n, high: 301n } });
  });

  it('bounds the interval by an ask below and a bid above when demand exceeds supply', () => {
    // D = 300 up to 500; S = 100 on [200, 299], 200 from 300  =>  Q* = 200 on [300, 500].
    const result = clearAuction([bid('b', 300, 500), ask('a1', 100, 200), ask('a2', 100, 300)]);
    expect(result).toMatchObject({ volumeWh: 200, price: 400n, priceRange: { low: 300n, high: 500n } });
    expect(result.fills).toEqual([fill('b', 'a1', 100), fill('b', 'a2', 100)]);
    expect(result.filledWh).toEqual(filled({ b: 200, a1: 100, a2: 100 }));
  });

  it('clears at an equal bid and ask price', () => {
    const result = clearAuction([bid('b', 100, 400), ask('a', 70, 400)]);
    expect(result).toMatchObject({ volumeWh: 70, price: 400n, priceRange: { low: 400n, high: 400n } });
    expect(result.fills).toEqual([fill('b', 'a', 70)]);
    expect(result.filledWh).toEqual(filled({ b: 70, a: 70 }));
  });

  it('fills only the marginal order partially', () => {
    // Q* = 250 on [300, 400]: the three bids at 400+ cover it; b3 is the margin.
    const result = clearAuction([
      bid('b1', 100, 450),
      bid('b2', 100, 420),
      bid('b3', 100, 400),
      ask('a1', 250, 300),
    ]);
    expect(result).toMatchObject({ volumeWh: 250, price: 350n, priceRange: { low: 300n, high: 400n } });
    expect(result.filledWh).toEqual(filled({ b1: 100, b2: 100, b3: 50, a1: 250 }));
    expect(result.fills).toEqual([fill('b1', 'a1', 100), fill('b2', 'a1', 100), fill('b3', 'a1', 50)]);
  });

  it('resolves ties at the margin by seq, not by input order', () => {
    const result = clearAuction([
      bid('late', 100, 400, 20),
      bid('early', 100, 400, 10),
      ask('a-late', 100, 300, 21),
      ask('a-early', 100, 300, 11),
      ask('a-top', 50, 350, 1),
    ]);
    // D = 200 up to 400; S = 200 on [300, 349], 250 from 350  =>  Q* = 200 on [300, 400], price 350.
    expect(result).toMatchObject({ volumeWh: 200, price: 350n, priceRange: { low: 300n, high: 400n } });
    // Asks at 300 fill before the one at 350, whatever their seq; among the two at 300, seq decides.
    expect(result.fills).toEqual([fill('early', 'a-early', 100), fill('late', 'a-late', 100)]);

    const margin = clearAuction([bid('late', 100, 400, 2), bid('early', 100, 400, 1), ask('a', 150, 400, 3)]);
    expect(margin.filledWh).toEqual(filled({ early: 100, late: 50, a: 150 }));
    expect(margin.fills).toEqual([fill('early', 'a', 100), fill('late', 'a', 50)]);
  });

  it('keeps input order between orders with the same limit and the same seq', () => {
    const result = clearAuction([bid('first', 100, 400, 5), bid('second', 100, 400, 5), ask('a', 150, 400, 1)]);
    expect(result.filledWh).toEqual(filled({ first: 100, second: 50, a: 150 }));
  });

  it('gives higher bids and lower asks priority over time', () => {
    const result = clearAuction([
      bid('b-old-low', 100, 400, 1),
      bid('b-new-high', 100, 450, 9),
      ask('a-old-high', 100, 350, 2),
      ask('a-new-low', 100, 300, 8),
    ]);
    // Q* = 200 on [350, 400]: everything fills, in price order.
    expect(result).toMatchObject({ volumeWh: 200, price: 375n });
    expect(result.fills).toEqual([fill('b-new-high', 'a-new-low', 100), fill('b-old-low', 'a-old-high', 100)]);
  });

  it('accepts limits 0 and 2^31 and sorts limits wider than 16 bits', () => {
    // D: <= 100000: 200 | above: 100.  S: [0, 70000): 100 | [70000, 2e9): 200 | from 2e9: 300.
    // min(D, S) = 200 exactly on [70000, 100000].
    const result = clearAuction([
      bid('b-max', 100, MAX_LIMIT),
      bid('b-mid', 100, 100_000),
      ask('a-zero', 100, 0),
      ask('a-mid', 100, 70_000),
      ask('a-high', 100, 2_000_000_000),
    ]);
    expect(result).toMatchObject({ volumeWh: 200, price: 85_000n, priceRange: { low: 70_000n, high: 100_000n } });
    expect(result.fills).toEqual([fill('b-max', 'a-zero', 100), fill('b-mid', 'a-mid', 100)]);
  });

  it('orders limits that share their high 16 bits by the low ones', () => {
    // Bid keys (distance from the best bid, 200000): 0, 99999 and 100000. The last two share
    // the high digit, so only the low-digit pass puts 100001 ahead of the earlier 100000.
    // D = 300 up to 100000, 200 up to 100001, then 100; S = 150 from 0  =>  Q* = 150 on [0, 100001].
    const result = clearAuction([bid('b-100000', 100, 100_000), bid('b-100001', 100, 100_001), bid('b-200000', 100, 200_000), ask('a', 150, 0)]);
    expect(result).toMatchObject({ volumeWh: 150, price: 50_000n, priceRange: { low: 0n, high: 100_001n } });
    expect(result.fills).toEqual([fill('b-200000', 'a', 100), fill('b-100001', 'a', 50)]);
  });

  it('gives the same result whatever order the orders arrive in (seq decides)', () => {
    const book = [
      bid('b1', 100, 500, 3),
      bid('b2', 200, 400, 1),
      bid('b3', 100, 400, 0),
      ask('a1', 150, 250, 5),
      ask('a2', 100, 350, 2),
      ask('a3', 200, 350, 4),
    ];
    const expected = clearAuction(book);
    expect(clearAuction([...book].reverse())).toEqual(expected);
    // A seq span too wide to pack with the index into one float64 takes the comparator sort.
    const wide = book.map((o, k) => ({ ...o, seq: (o.seq - 2.5) * 2 ** 51 + k }));
    expect(clearAuction([...wide].reverse())).toEqual(expected);
    // Equal seqs keep input order on both paths.
    for (const top of [2 ** 52, 7]) {
      const tied = clearAuction([bid('p', 100, 400, top), bid('q', 100, 400, top), ask('r', 150, 300, -top)]);
      expect(tied.filledWh).toEqual(filled({ p: 100, q: 50, r: 150 }));
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Input validation

describe('clearAuction: input validation', () => {
  const ok = (over: Partial<Record<keyof BookOrder, unknown>>) => ({ ...bid('x-1', 100, 400, 1), ...over }) as BookOrder;
  const refuse = (o: BookOrder, message: RegExp) => {
    expect(() => clearAuction([ask('other', 100, 300, 0), o])).toThrow(RangeError);
    expect(() => clearAuction([ask('other', 100, 300, 0), o])).toThrow(message);
  };

  it('refuses energies that are not positive safe integers, naming the order', () => {
    for (const energyWh of [0, -5, 1.5, Number.NaN, Infinity, 2 ** 53, '100']) refuse(ok({ energyWh }), /order "x-1": energyWh must be a positive safe integer/);
  });

  it('refuses limits below 0 or above 2^31, or not bigints', () => {
    refuse(ok({ limit: -1n }), /order "x-1": limit must be between 0 and 2147483648/);
    refuse(ok({ limit: MAX_LIMIT + 1n }), /order "x-1": limit must be between 0 and 2147483648/);
    refuse(ok({ limit: 10n ** 40n }), /order "x-1": limit must be between/);
    refuse(ok({ limit: 400 }), /order "x-1": limit must be a bigint/);
    expect(clearAuction([ok({ limit: MAX_LIMIT }), ask('a', 100, 0, 2)]).volumeWh).toBe(100);
  });

  it('refuses duplicate ids', () => {
    expect(() => clearAuction([bid('same', 100, 400), ask('a', 100, 300), ask('same', 100, 300)])).toThrow(
      /order "same": duplicate order id \(also at index 0\)/,
    );
    expect(() => clearAuction([bid('same', 100, 400), ask('a', 100, 300), ask('same', 100, 300)])).toThrow(RangeError);
  });

  it('finds a duplicate among many ids', () => {
    const book = Array.from({ length: 50_000 }, (_, i) => bid(`id-${i}`, 1, 1, i));
    expect(clearAuction(book).volumeWh).toBe(0);
    book.push(ask('id-31337', 1, 1, 50_000));
    expect(() => clearAuction(book)).toThrow(/order "id-31337": duplicate order id \(also at index 31337\)/);
  });

  it('tells ids with the same hash apart', () => {
    // FNV-1a collisions: the duplicate check hashes ids and compares strings only on a match.
    const book = [bid('costarring', 100, 400), ask('liquid', 100, 300), bid('declinate', 1, 1), ask('macallums', 1, 500)];
    expect(clearAuction(book).volumeWh).toBe(100);
    expect(() => clearAuction([...book, ask('liquid', 5, 5)])).toThrow(/order "liquid": duplicate order id \(also at index 1\)/);
  });

  it('refuses bad sides, seqs and ids', () => {
    refuse(ok({ side: 'bid' }), /order "x-1": side must be 'buy' or 'sell'/);
    refuse(ok({ seq: 1.5 }), /order "x-1": seq must be a safe integer/);
    refuse(ok({ seq: Number.NaN }), /order "x-1": seq must be a safe integer/);
    refuse(ok({ id: '' }), /order at index 1: id must be a non-empty string/);
    refuse(ok({ id: 7 }), /order at index 1: id must be a non-empty string/);
    refuse(null as unknown as BookOrder, /order at index 1 is not an object/);
  });

  it('refuses a side whose total energy is not a safe integer', () => {
    const big = Number.MAX_SAFE_INTEGER - 1;
    expect(() => clearAuction([bid('b1', big, 400), bid('b2', big, 400), ask('a', 1, 300)])).toThrow(/exceeds Number.MAX_SAFE_INTEGER/);
    expect(clearAuction([bid('b1', big, 400), ask('a', big, 300)]).volumeWh).toBe(big);
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests against a brute-force reference

interface Reference {
  volumeWh: number;
  low: number;
  high: number;
  price: number;
  fills: Fill[];
  filledWh: Map<OrderId, number>;
}

/**
 * The rule, computed the slow and obvious way: min(D, S) at every integer price between the
 * lowest and the highest order price; then each side sorted by price-time priority (seq, then
 * input order) with a comparator, filled from the top, and paired with two pointers.
 */
function reference(book: readonly BookOrder[]): Reference {
  const none: Reference = { volumeWh: 0, low: 0, high: 0, price: 0, fills: [], filledWh: new Map() };
  if (book.length === 0) return none;
  const limits = book.map((o) => Number(o.limit));
  const bids = book.filter((o) => o.side === 'buy');
  const asks = book.filter((o) => o.side === 'sell');
  const sum = (os: BookOrder[]) => os.reduce((s, o) => s + o.energyWh, 0);
  let volumeWh = 0;
  let low = 0;
  let high = 0;
  for (let p = Math.min(...limits); p <= Math.max(...limits); p++) {
    const d = sum(bids.filter((o) => Number(o.limit) >= p));
    const s = sum(asks.filter((o) => Number(o.limit) <= p));
    const m = Math.min(d, s);
    if (m > volumeWh) [volumeWh, low] = [m, p];
    if (m === volumeWh) high = p;
  }
  if (volumeWh === 0) return none;
  const price = Math.floor((low + high) / 2);
  const at = new Map(book.map((o, i) => [o, i]));
  const byTime = (x: BookOrder, y: BookOrder) => x.seq - y.seq || at.get(x)! - at.get(y)!;
  const takeFrom = (os: BookOrder[]) => {
    let left = volumeWh;
    return os.map((o) => {
      const take = Math.min(o.energyWh, left);
      left -= take;
      return { o, take };
    });
  };
  const bidTakes = takeFrom(bids.filter((o) => Number(o.limit) >= price).sort((x, y) => Number(y.limit - x.limit) || byTime(x, y))).filter((t) => t.take > 0);
  const askTakes = takeFrom(asks.filter((o) => Number(o.limit) <= price).sort((x, y) => Number(x.limit - y.limit) || byTime(x, y))).filter((t) => t.take > 0);
  const fills: Fill[] = [];
  const bidLeft = bidTakes.map((t) => t.take);
  const askLeft = askTakes.map((t) => t.take);
  for (let b = 0, a = 0; b < bidTakes.length && a < askTakes.length; ) {
    const wh = Math.min(bidLeft[b]!, askLeft[a]!);
    fills.push({ buy: bidTakes[b]!.o.id, sell: askTakes[a]!.o.id, energyWh: wh });
    bidLeft[b] = bidLeft[b]! - wh;
    askLeft[a] = askLeft[a]! - wh;
    if (bidLeft[b] === 0) b++;
    if (askLeft[a] === 0) a++;
  }
  const filledWh = new Map([...bidTakes, ...askTakes].map((t) => [t.o.id, t.take]));
  return { volumeWh, low, high, price, fills, filledWh };
}

/** The rule's guarantees, checked on the result alone (not by comparing with the reference). */
function checkInvariants(book: readonly BookOrder[], result: ClearingResult): void {
  const { volumeWh, price, fills, filledWh } = result;
  if (volumeWh === 0) {
    expect(result).toEqual({ volumeWh: 0, price: null, priceRange: null, fills: [], filledWh: new Map() });
    return;
  }
  expect(price).not.toBeNull();
  const { low, high } = result.priceRange!;
  expect(low <= price! && price! <= high).toBe(true);
  expect(price).toBe((low + high) / 2n);
  expect(book.some((o) => o.limit === low) && book.some((o) => o.limit === high)).toBe(true);

  const byId = new Map(book.map((o, i) => [o.id, { o, i }]));
  const bySide = (side: Side) => book.filter((o) => o.side === side);
  // Each side's fills add up to Q*, no order is overfilled, every fill is positive.
  for (const side of ['buy', 'sell'] as const) {
    const total = bySide(side).reduce((s, o) => s + (filledWh.get(o.id) ?? 0), 0);
    expect(total).toBe(volumeWh);
  }
  for (const [id, wh] of filledWh) {
    const { o } = byId.get(id)!;
    expect(wh).toBeGreaterThan(0);
    expect(wh).toBeLessThanOrEqual(o.energyWh);
    // Filled bids bid at least the price; filled asks ask at most the price.
    expect(o.side === 'buy' ? o.limit >= price! : o.limit <= price!).toBe(true);
  }
  // Price-time priority: no strictly better order is left short while a worse one got energy.
  // "Strictly better" is transitive, so checking against the worst filled order covers all.
  for (const side of ['buy', 'sell'] as const) {
    const better = (x: BookOrder, y: BookOrder) =>
      (side === 'buy' ? x.limit > y.limit : x.limit < y.limit) || (x.limit === y.limit && x.seq < y.seq);
    let worst: BookOrder | undefined;
    for (const o of bySide(side)) if (filledWh.has(o.id) && (worst === undefined || better(worst, o))) worst = o;
    for (const o of bySide(side)) if (better(o, worst!)) expect(filledWh.get(o.id)).toBe(o.energyWh);
  }
  // fills and filledWh agree; at most (#filled bids + #filled asks - 1) fills.
  const fromFills = new Map<OrderId, number>();
  for (const f of fills) {
    expect(f.energyWh).toBeGreaterThan(0);
    expect(byId.get(f.buy)!.o.side).toBe('buy');
    expect(byId.get(f.sell)!.o.side).toBe('sell');
    for (const id of [f.buy, f.sell]) fromFills.set(id, (fromFills.get(id) ?? 0) + f.energyWh);
  }
  expect(fromFills).toEqual(filledWh);
  expect(fills.length).toBeLessThanOrEqual(filledWh.size - 1);
}

function expectMatchesReference(book: readonly BookOrder[], result: ClearingResult): void {
  const ref = reference(book);
  expect(result.volumeWh).toBe(ref.volumeWh);
  if (ref.volumeWh === 0) return;
  expect(result.price).toBe(BigInt(ref.price));
  expect(result.priceRange).toEqual({ low: BigInt(ref.low), high: BigInt(ref.high) });
  expect(result.fills).toEqual(ref.fills);
  expect(result.filledWh).toEqual(ref.filledWh);
}

/**
 * Random books of up to 40 orders. Each book draws its prices from one band: narrow bands force
 * equal prices, ties and flat segments; bands at 0 and at 2^31 test the ends. Small energies make
 * equal cumulative volumes (and so flat segments) common. seq is either the input position or
 * random with repeats; sides may be empty.
 */
function bookArb(widths = [0, 1, 2, 5, 20, 300]): fc.Arbitrary<BookOrder[]> {
  const row = fc.record({
    buy: fc.boolean(),
    energy: fc.nat(),
    price: fc.nat(),
    seq: fc.nat(30),
  });
  return fc
    .record({
      width: fc.constantFrom(...widths),
      base: fc.constantFrom(0, 400, Number(MAX_LIMIT)),
      maxEnergy: fc.constantFrom(1, 3, 10, 1000),
      seqInOrder: fc.boolean(),
      rows: fc.array(row, { maxLength: 40, size: 'max' }),
    })
    .map(({ width, base, maxEnergy, seqInOrder, rows }) => {
      const lowest = Math.min(base, Number(MAX_LIMIT) - width);
      return rows.map((r, i) =>
        order(
          `o${i}`,
          r.buy ? 'buy' : 'sell',
          1 + (r.energy % maxEnergy),
          lowest + (r.price % (width + 1)),
          seqInOrder ? i : r.seq,
        ),
      );
    });
}

describe('clearAuction: properties', () => {
  it('matches the brute-force reference and keeps the rule’s guarantees on random books', () => {
    fc.assert(
      fc.property(bookArb(), (book) => {
        const result = clearAuction(book);
        checkInvariants(book, result);
        expectMatchesReference(book, result);
      }),
      { numRuns: 4000 },
    );
  });

  it('does not depend on input order when seqs are distinct', () => {
    fc.assert(
      fc.property(
        bookArb().map((book) => book.map((o, i) => ({ ...o, seq: o.seq * 100 + i }))),
        fc.integer({ min: 0, max: 2 ** 31 }),
        (book, seed) => {
          const shuffled = [...book];
          for (let i = shuffled.length - 1, s = seed; i > 0; i--) {
            s = (Math.imul(s, 1103515245) + 12345) >>> 0;
            const j = s % (i + 1);
            [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
          }
          expect(clearAuction(shuffled)).toEqual(clearAuction(book));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('gives the same fills when prices are spread over a range wider than 16 bits', () => {
    // p -> p * k + c keeps every order's rank, so Q*, the fills and the interval's end points
    // (mapped) are unchanged; the sort now needs its two-pass path. Factors below 2^16 make
    // keys that share a high digit, factors above it keys that do not.
    const factor = fc.oneof(fc.integer({ min: 220, max: 65_536 }).noBias(), fc.integer({ min: 65_537, max: 7_000_000 }).noBias());
    fc.assert(
      fc.property(bookArb([300]), factor, (book, k) => {
        const small = book.map((o) => ({ ...o, limit: o.limit % 301n }));
        const wide = small.map((o) => ({ ...o, limit: o.limit * BigInt(k) + 7n }));
        const a = clearAuction(small);
        const b = clearAuction(wide);
        checkInvariants(wide, b);
        expect(b.volumeWh).toBe(a.volumeWh);
        expect(b.fills).toEqual(a.fills);
        expect(b.filledWh).toEqual(a.filledWh);
        if (a.priceRange) expect(b.priceRange).toEqual({ low: a.priceRange.low * BigInt(k) + 7n, high: a.priceRange.high * BigInt(k) + 7n });
      }),
      { numRuns: 1000 },
    );
  });

  it('matches the reference on a large book with many ties', () => {
    let s = 42;
    const rand = (n: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const book = Array.from({ length: 20_000 }, (_, i) => order(`big-${i}`, rand(2) ? 'buy' : 'sell', 1 + rand(50), 350 + rand(100), rand(5000)));
    const result = clearAuction(book);
    expect(result.volumeWh).toBeGreaterThan(0);
    checkInvariants(book, result);
    expectMatchesReference(book, result);
  });
});

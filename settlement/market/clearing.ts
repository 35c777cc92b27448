/**
 * Uniform-price double-auction clearing. Pure domain code: no I/O, no clock.
 *
 * ## Clearing rule
 *
 * Every order has a side (buy = bid, sell = ask), an energy in Wh and a limit price in minor
 * units per kWh.
 *
 * - D(p) = total energy of bids with limit >= p; S(p) = total energy of asks with limit <= p.
 * - Matched volume Q* = max over p of min(D(p), S(p)).
 * - The set of integer prices p where min(D, S) = Q* is an interval [low, high] (bounds are
 *   order prices).
 * - Clearing price = floor((low + high) / 2) (midpoint, rounded down to a whole minor unit per
 *   kWh).
 * - Eligible bids (limit >= price) are filled in price-time priority (higher limit first, then
 *   lower seq) until Q* is reached; eligible asks (limit <= price) likewise (lower limit first,
 *   then lower seq). So only the marginal order(s) are partially filled.
 * - Fills pair the filled bids and asks in that order (two-pointer walk), giving at most
 *   (#filled bids + #filled asks - 1) fills.
 * - Q* = 0 → price null, no fills, priceRange null.
 *
 * Orders with equal limit and equal seq keep their input order. Which orders fill does not
 * depend on where in [low, high] the price lands: the first Q* Wh in priority order already
 * have bid limits >= high and ask limits <= low.
 *
 * Input is refused with a RangeError naming the order: energyWh must be a positive safe
 * integer, limit a bigint in [0, 2^31], seq a safe integer, side 'buy' or 'sell', ids unique,
 * and each side's total energy a safe integer.
 *
 * ## Why it looks like this
 *
 * A market interval can hold a million orders, so the work is done on typed arrays: limits
 * become numbers (exact, they are <= 2^31), each side is put in priority order by a stable
 * radix sort on the limit over the orders in time order, and the curves are swept once.
 * Objects and bigints are only touched while reading the input and writing the result.
 * Scratch memory is watched too (about 60 bytes of typed arrays per order): allocating much
 * more makes V8 run a full garbage collection in the middle of a large clearing.
 */
import type { OrderId, PricePerKwh, Side } from './types.ts';

export interface BookOrder {
  id: OrderId;
  side: Side;
  energyWh: number;
  limit: PricePerKwh;
  /** Time priority: lower first. */
  seq: number;
}

export interface Fill {
  buy: OrderId;
  sell: OrderId;
  energyWh: number;
}

/**
 * The outcome as columns over the input: a million-order book gives half a million fills, and
 * building that many objects (or a Map of filled energy per id) would cost more than the whole
 * clearing. `fillList` and `filledMap` turn them into objects where that is wanted.
 */
export interface ClearingResult {
  /** Matched energy (0 when the curves do not cross). */
  volumeWh: number;
  /** Uniform clearing price; null when volumeWh is 0. */
  price: PricePerKwh | null;
  /** The interval of prices that maximise matched volume. */
  priceRange: { low: PricePerKwh; high: PricePerKwh } | null;
  /** Buyer/seller pairs in price-time priority order: input indices of the orders, and the energy. */
  fills: { buy: Uint32Array; sell: Uint32Array; energyWh: Float64Array };
  /** Matched energy per order, by input index (0 for an order that did not fill). */
  filledWh: Float64Array;
}

/** The fills as objects naming the orders by id. */
export function fillList(orders: readonly BookOrder[], r: ClearingResult): Fill[] {
  const out: Fill[] = [];
  for (let k = 0; k < r.fills.buy.length; k++) out.push({ buy: orders[r.fills.buy[k]!]!.id, sell: orders[r.fills.sell[k]!]!.id, energyWh: r.fills.energyWh[k]! });
  return out;
}

/** Matched energy per order id, for the orders that filled. */
export function filledMap(orders: readonly BookOrder[], r: ClearingResult): Map<OrderId, number> {
  const out = new Map<OrderId, number>();
  r.filledWh.forEach((wh, i) => {
    if (wh > 0) out.set(orders[i]!.id, wh);
  });
  return out;
}

/** The highest accepted limit, 2^31 minor units per kWh: keeps limits exact as numbers. */
export const MAX_LIMIT: PricePerKwh = 2n ** 31n;

export function clearAuction(orders: readonly BookOrder[]): ClearingResult {
  const book = readBook(orders);
  assertUniqueIds(book);
  const { bids, asks } = prioritise(book, book.inTimeOrder ? null : timeOrder(orders));
  const { volumeWh, low, high } = findCrossing(book, bids, asks);
  if (volumeWh === 0) {
    return { volumeWh: 0, price: null, priceRange: null, fills: { buy: new Uint32Array(0), sell: new Uint32Array(0), energyWh: new Float64Array(0) }, filledWh: new Float64Array(book.n) };
  }
  const price = Math.floor((low + high) / 2);
  const bidFill = fillSide(bids, volumeWh, (limit) => limit >= price);
  const askFill = fillSide(asks, volumeWh, (limit) => limit <= price);
  return {
    volumeWh,
    price: BigInt(price),
    priceRange: { low: BigInt(low), high: BigInt(high) },
    fills: pair(bidFill, askFill),
    filledWh: filledPerOrder(book, bidFill, askFill),
  };
}

// ---------------------------------------------------------------------------------------------
// Reading and validating the book into columns (one pass over the objects).

interface Book {
  n: number;
  ids: OrderId[];
  /** hashString of each id, for the duplicate check. */
  idHash: Uint32Array;
  isBuy: Uint8Array;
  /** Limits as integers: exact, since they are <= 2^31. */
  limit: Uint32Array;
  energy: Float64Array;
  bidCount: number;
  /** Total energy of the bids: D at the lowest price. */
  bidWh: number;
  /** Each side's limit range (for the sort keys and their width). */
  bidLimits: { min: number; max: number };
  askLimits: { min: number; max: number };
  /** Whether seq never decreases along the input, which saves sorting by time. */
  inTimeOrder: boolean;
}

const LIMIT_CAP = Number(MAX_LIMIT);

function readBook(orders: readonly BookOrder[]): Book {
  if (!Array.isArray(orders)) throw new RangeError('clearAuction: orders must be an array');
  const n = orders.length;
  const ids = new Array<OrderId>(n);
  const idHash = new Uint32Array(n);
  const isBuy = new Uint8Array(n);
  const limits = new Uint32Array(n);
  const energy = new Float64Array(n);
  let minBid = Infinity;
  let maxBid = -Infinity;
  let minAsk = Infinity;
  let maxAsk = -Infinity;
  let bidCount = 0;
  let bidWh = 0;
  let askWh = 0;
  let inTimeOrder = true;
  let lastSeq = -Infinity;
  for (let i = 0; i < n; i++) {
    const o = orders[i];
    if (typeof o !== 'object' || o === null) throw new RangeError(`order at index ${i} is not an object`);
    const { id, side, energyWh, limit, seq } = o;
    if (typeof id !== 'string' || id === '') throw new RangeError(`order at index ${i}: id must be a non-empty string`);
    if (side !== 'buy' && side !== 'sell') throw bad(id, `side must be 'buy' or 'sell' (got ${String(side)})`);
    if (!Number.isSafeInteger(energyWh) || energyWh <= 0) throw bad(id, `energyWh must be a positive safe integer (got ${String(energyWh)})`);
    if (typeof limit !== 'bigint') throw bad(id, `limit must be a bigint of minor units per kWh (got ${typeof limit})`);
    // Compared as a number: cheaper than two bigint comparisons, and exact here, since a bigint
    // above 2^31 never rounds down to 2^31 or below.
    const p = Number(limit);
    if (!(p >= 0 && p <= LIMIT_CAP)) throw bad(id, `limit must be between 0 and ${MAX_LIMIT} minor units per kWh (got ${limit})`);
    if (!Number.isSafeInteger(seq)) throw bad(id, `seq must be a safe integer (got ${String(seq)})`);
    if (seq < lastSeq) inTimeOrder = false;
    lastSeq = seq;
    ids[i] = o.id;
    idHash[i] = hashString(id); // here, while the string is in cache
    limits[i] = p;
    energy[i] = energyWh;
    if (side === 'buy') {
      isBuy[i] = 1;
      bidCount++;
      bidWh += energyWh;
      minBid = Math.min(minBid, p);
      maxBid = Math.max(maxBid, p);
    } else {
      askWh += energyWh;
      minAsk = Math.min(minAsk, p);
      maxAsk = Math.max(maxAsk, p);
    }
  }
  // Curve sums are plain numbers: they stay exact only while each side's total is a safe integer.
  if (!Number.isSafeInteger(bidWh) || !Number.isSafeInteger(askWh)) {
    throw new RangeError('clearAuction: total energy of one side exceeds Number.MAX_SAFE_INTEGER Wh');
  }
  const bidLimits = { min: minBid, max: maxBid };
  const askLimits = { min: minAsk, max: maxAsk };
  return { n, ids, idHash, isBuy, limit: limits, energy, bidCount, bidWh, bidLimits, askLimits, inTimeOrder };
}

function bad(id: string, what: string): RangeError {
  return new RangeError(`order ${JSON.stringify(id)}: ${what}`);
}

/**
 * Refuses duplicate ids. A Set of a million strings costs more than the whole rest of the
 * clearing, so the ids' 32-bit hashes are radix-sorted instead; only ids whose hash occurs more
 * than once (a handful in a million) are then compared as strings.
 */
function assertUniqueIds(book: Book): void {
  const { ids, idHash } = book;
  const sorted = sortUint32(idHash.slice());
  const repeated = new Set<number>();
  for (let r = 1; r < sorted.length; r++) if (sorted[r] === sorted[r - 1]) repeated.add(sorted[r]!);
  if (repeated.size === 0) return;
  // A bitmap of the repeated hashes' low 16 bits spares most ids the Set lookup.
  const maybe = new Uint8Array(DIGIT_MASK + 1);
  for (const h of repeated) maybe[h & DIGIT_MASK] = 1;
  const seen = new Map<string, number>();
  for (let i = 0; i < ids.length; i++) {
    if (maybe[idHash[i]! & DIGIT_MASK] === 0 || !repeated.has(idHash[i]!)) continue;
    const earlier = seen.get(ids[i]!);
    if (earlier !== undefined) throw bad(ids[i]!, `duplicate order id (also at index ${earlier})`);
    seen.set(ids[i]!, i);
  }
}

/** FNV-1a over UTF-16 code units, as an unsigned 32-bit integer. */
function hashString(s: string): number {
  let h = 0x811c9dc5 | 0;
  for (let k = 0; k < s.length; k++) h = Math.imul(h ^ s.charCodeAt(k), 0x01000193);
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Price-time priority, by radix sorts: linear, and no objects or bigints are compared.

/**
 * Order indices sorted by (seq, input index), for books that do not arrive in time order.
 * (seq - min) and the index are packed into one float64 key and a Float64Array is sorted; when
 * the seq span is too wide for that to be exact, a comparator sort.
 */
function timeOrder(orders: readonly BookOrder[]): Uint32Array {
  const n = orders.length;
  const seq = Float64Array.from(orders, (o) => o.seq);
  const order = new Uint32Array(n);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    min = Math.min(min, seq[i]!);
    max = Math.max(max, seq[i]!);
    order[i] = i;
  }
  const radix = 2 ** Math.ceil(Math.log2(n)); // a power of two >= n: decoding is exact
  if (max - min < 2 ** 53 / radix) {
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) keys[i] = (seq[i]! - min) * radix + i;
    keys.sort();
    for (let r = 0; r < n; r++) {
      const k = keys[r]!;
      order[r] = k - Math.floor(k / radix) * radix;
    }
    return order;
  }
  return order.sort((a, b) => (seq[a]! < seq[b]! ? -1 : seq[a]! > seq[b]! ? 1 : a - b));
}

/**
 * One side of the book in priority order, as columns: row r is the order at input index
 * index[r], with its limit and energy copied alongside so the sweeps read memory in order.
 */
interface SideBook {
  index: Uint32Array;
  limit: Uint32Array;
  energy: Float64Array;
}

/**
 * Each side in priority order: bids by descending limit, asks by ascending limit, ties in time
 * order. The key is the limit's distance from the side's best limit; a stable radix sort by key
 * over the orders taken in time order (`inTime`, or input order when null) gives exactly that.
 */
function prioritise(book: Book, inTime: Uint32Array | null): { bids: SideBook; asks: SideBook } {
  const { n, isBuy, limit } = book;
  const maxBid = book.bidLimits.max;
  const minAsk = book.askLimits.min;
  const key = new Uint32Array(n); // one array serves both sides: each index is on exactly one
  const bids = new Uint32Array(book.bidCount);
  const asks = new Uint32Array(n - book.bidCount);
  for (let r = 0, b = 0, a = 0; r < n; r++) {
    const i = inTime === null ? r : inTime[r]!;
    if (isBuy[i]) {
      key[i] = maxBid - limit[i]!;
      bids[b++] = i;
    } else {
      key[i] = limit[i]! - minAsk;
      asks[a++] = i;
    }
  }
  return {
    bids: radixSort(book, bids, key, maxBid - book.bidLimits.min),
    asks: radixSort(book, asks, key, book.askLimits.max - minAsk),
  };
}

const DIGIT_BITS = 16;
const DIGIT_MASK = 2 ** DIGIT_BITS - 1;

/**
 * Stable LSD radix sort of `items` (order indices) by key[item] (< 2^32), into a SideBook.
 * Keys up to 2^16 - 1 (for limits: a band up to 655.35 units of currency per kWh wide) take
 * one counting pass, wider ones two. The last pass also copies each order's limit and energy:
 * it reads `items` in order, so that copy costs little, unlike looking them up later by index.
 */
function radixSort(book: Book, items: Uint32Array, key: Uint32Array, maxKey: number): SideBook {
  const rows = items.length;
  const sorted: SideBook = { index: new Uint32Array(rows), limit: new Uint32Array(rows), energy: new Float64Array(rows) };
  if (rows === 0) return sorted; // an empty side has no key range
  // Wide keys: a first pass on the low 16 bits; the pass below then sorts on the high ones.
  const wide = maxKey > DIGIT_MASK;
  const source = wide ? sortByLowDigit(items, key) : items;
  const shift = wide ? DIGIT_BITS : 0;
  const next = digitStarts(source, key, shift, (maxKey >>> shift) + 1);
  for (let r = 0; r < rows; r++) {
    const i = source[r]!;
    const to = next[(key[i]! >>> shift) & DIGIT_MASK]!++;
    sorted.index[to] = i;
    sorted.limit[to] = book.limit[i]!;
    sorted.energy[to] = book.energy[i]!;
  }
  return sorted;
}

function sortByLowDigit(items: Uint32Array, key: Uint32Array): Uint32Array {
  const sorted = new Uint32Array(items.length);
  const next = digitStarts(items, key, 0, DIGIT_MASK + 1);
  for (let r = 0; r < items.length; r++) sorted[next[key[items[r]!]! & DIGIT_MASK]!++] = items[r]!;
  return sorted;
}

/** Where each digit's run starts in a counting pass's output (prefix sums of digit counts). */
function digitStarts(items: Uint32Array, key: Uint32Array, shift: number, buckets: number): Uint32Array {
  const next = new Uint32Array(buckets);
  for (let r = 0; r < items.length; r++) next[(key[items[r]!]! >>> shift) & DIGIT_MASK]!++;
  toStarts(next);
  return next;
}

/** 32-bit values in ascending order: two counting passes over 16-bit digits. Sorts in place. */
function sortUint32(values: Uint32Array): Uint32Array {
  const scratch = new Uint32Array(values.length);
  valuePass(values, scratch, 0);
  valuePass(scratch, values, DIGIT_BITS);
  return values;
}

function valuePass(src: Uint32Array, dst: Uint32Array, shift: number): void {
  const next = new Uint32Array(DIGIT_MASK + 1);
  for (let r = 0; r < src.length; r++) next[(src[r]! >>> shift) & DIGIT_MASK]!++;
  toStarts(next);
  for (let r = 0; r < src.length; r++) dst[next[(src[r]! >>> shift) & DIGIT_MASK]!++] = src[r]!;
}

/** Digit counts to the positions where each digit's run starts (exclusive prefix sums). */
function toStarts(counts: Uint32Array): void {
  for (let d = 0, at = 0; d < counts.length; d++) {
    const count = counts[d]!;
    counts[d] = at;
    at += count;
  }
}

// ---------------------------------------------------------------------------------------------
// The crossing and the fills.

/**
 * Q* and the interval [low, high] of prices reaching it. min(D, S) is a step function whose
 * maximising set is an interval bounded by order prices (its low end is an ask or the lowest
 * order price, its high end a bid or the highest), so evaluating it at each distinct order
 * price, swept upwards over both sorted sides at once, finds all three.
 */
function findCrossing(book: Book, bids: SideBook, asks: SideBook): { volumeWh: number; low: number; high: number } {
  let demand = book.bidWh; // D(p): bids with limit >= p
  let supply = 0; // S(p): asks with limit <= p
  let best = 0;
  let low = 0;
  let high = 0;
  let a = 0; // next ask, ascending limits
  let b = bids.limit.length - 1; // next bid, walking the descending bids from their low end
  while (a < asks.limit.length || b >= 0) {
    const p = Math.min(a < asks.limit.length ? asks.limit[a]! : Infinity, b >= 0 ? bids.limit[b]! : Infinity);
    for (; a < asks.limit.length && asks.limit[a] === p; a++) supply += asks.energy[a]!;
    const matched = Math.min(demand, supply);
    if (matched > best) {
      best = matched;
      low = p;
    }
    if (matched === best) high = p;
    // Bids at p still count at p, not above it.
    for (; b >= 0 && bids.limit[b] === p; b--) demand -= bids.energy[b]!;
  }
  return { volumeWh: best, low, high };
}

/**
 * The filled part of one side: its first `count` rows, all filled completely except the last
 * (the marginal order), which gets `marginalWh`.
 */
interface SideFill {
  side: SideBook;
  count: number;
  marginalWh: number;
}

function fillSide(side: SideBook, volumeWh: number, eligible: (limit: number) => boolean): SideFill {
  let count = 0;
  let sum = 0;
  while (sum < volumeWh) {
    // Cannot trigger: D(price) and S(price) are both >= Q*. Kept so a bug fails loudly.
    if (count === side.limit.length || !eligible(side.limit[count]!)) throw new Error('clearAuction: ran out of eligible orders before Q*');
    sum += side.energy[count++]!;
  }
  return { side, count, marginalWh: side.energy[count - 1]! - (sum - volumeWh) };
}

/** Wh filled for the order in row r (< fill.count) of a side. */
function filledAt(fill: SideFill, r: number): number {
  return r === fill.count - 1 ? fill.marginalWh : fill.side.energy[r]!;
}

/** Two-pointer walk over the filled bids and asks, both in priority order and both summing to Q*. */
function pair(bids: SideFill, asks: SideFill): ClearingResult['fills'] {
  // At most one fill per filled order on either side, less one.
  const cap = bids.count + asks.count - 1;
  const buy = new Uint32Array(cap);
  const sell = new Uint32Array(cap);
  const energyWh = new Float64Array(cap);
  let k = 0;
  let b = 0;
  let a = 0;
  let bidLeft = filledAt(bids, 0);
  let askLeft = filledAt(asks, 0);
  for (;;) {
    const wh = Math.min(bidLeft, askLeft);
    buy[k] = bids.side.index[b]!;
    sell[k] = asks.side.index[a]!;
    energyWh[k++] = wh;
    bidLeft -= wh;
    askLeft -= wh;
    if (bidLeft === 0 && ++b < bids.count) bidLeft = filledAt(bids, b);
    if (askLeft === 0 && ++a < asks.count) askLeft = filledAt(asks, a);
    if (b === bids.count || a === asks.count) return { buy: buy.subarray(0, k), sell: sell.subarray(0, k), energyWh: energyWh.subarray(0, k) };
  }
}

/** Filled energy by input index. */
function filledPerOrder(book: Book, bids: SideFill, asks: SideFill): Float64Array {
  const filled = new Float64Array(book.n);
  for (const fill of [bids, asks]) for (let r = 0; r < fill.count; r++) filled[fill.side.index[r]!] = filledAt(fill, r);
  return filled;
}

import fc from 'fast-check';
import { it } from 'vitest';

import { clearAuction, MAX_LIMIT, type BookOrder } from '../../../settlement/market/clearing.ts';
import { orderId, type Side } from '../../../settlement/market/types.ts';
function order(id: string, side: Side, energyWh: number, limit: number | bigint, seq = 0): BookOrder {
  return { id: orderId(id), side, energyWh, limit: BigInt(limit), seq };
}
function bookArb(widths = [0, 1, 2, 5, 20, 300]): fc.Arbitrary<BookOrder[]> {
  const row = fc.record({
    buy: fc.boolean(),
    energy: fc.double({ min: 0, max: 1, noNaN: true }),
    price: fc.double({ min: 0, max: 1, noNaN: true }),
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
          1 + Math.min(maxEnergy - 1, Math.floor(r.energy * maxEnergy)),
          lowest + Math.min(width, Math.floor(r.price * (width + 1))),
          seqInOrder ? i : r.seq,
        ),
      );
    });
}


it('debug', () => {
  const factor = fc.oneof(fc.integer({ min: 220, max: 65_536 }).noBias(), fc.integer({ min: 65_537, max: 7_000_000 }).noBias());
  let diff = 0, wideSpan = 0, traded = 0, n = 0, sizes = 0;
  fc.assert(fc.property(bookArb([300]), factor, (book, k) => {
    n++; sizes += book.length;
    const small = book.map((o) => ({ ...o, limit: o.limit % 301n }));
    const wide = small.map((o) => ({ ...o, limit: o.limit * BigInt(k) + 7n }));
    const lim = wide.map((o) => Number(o.limit));
    if (lim.length && Math.max(...lim) - Math.min(...lim) >= 65536) wideSpan++;
    const a = clearAuction(small), b = clearAuction(wide);
    if (a.volumeWh > 0) traded++;
    if (JSON.stringify(a.fills) !== JSON.stringify(b.fills)) diff++;
  }), { numRuns: 1000 });
  const lens = fc.sample(bookArb(), 2000).map((b) => b.length);
  console.log('len0', lens.filter((l) => l === 0).length, 'len1', lens.filter((l) => l === 1).length, 'avg', lens.reduce((x, y) => x + y, 0) / lens.length);
  console.log({ n, avgSize: sizes / n, wideSpan, traded, diff });
});

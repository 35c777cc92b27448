import { formatPrice } from './money.ts';
import type { PriceSignal } from './pricing.ts';
import type { Currency } from './types.ts';

/** A price signal as the API and the live events show it: the price a decimal string, times ISO-8601. */
export interface PriceSignalView {
  market: string;
  price: string;
  currency: Currency;
  ratio: number;
  supplyWh: number;
  demandWh: number;
  intervalStart: string | null;
  computedAt: string;
  validUntil: string;
}

const iso = (ms: number) => new Date(ms).toISOString();

export function priceSignalView(s: PriceSignal, currency: Currency): PriceSignalView {
  return {
    market: s.market,
    price: formatPrice(s.price, currency),
    currency,
    ratio: s.ratio,
    supplyWh: s.supplyWh,
    demandWh: s.demandWh,
    intervalStart: s.intervalStartMs === null ? null : iso(s.intervalStartMs),
    computedAt: iso(s.computedAtMs),
    validUntil: iso(s.validUntilMs),
  };
}

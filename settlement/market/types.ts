/**
 * The market's vocabulary, shared by pricing, clearing, delivery settlement and credits. Plain
 * types: no I/O here. Energy is integer Wh (safe integers); money is bigint minor units
 * (satang, cents); a price is bigint minor units per kWh.
 */

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

export type OrderId = Brand<string, 'OrderId'>;
export type AuctionId = Brand<string, 'AuctionId'>;
export type TradeId = Brand<string, 'TradeId'>;

export const orderId = (s: string) => s as OrderId;
export const auctionId = (s: string) => s as AuctionId;
export const tradeId = (s: string) => s as TradeId;

export const CURRENCIES = ['THB', 'USD', 'EUR'] as const;
export type Currency = (typeof CURRENCIES)[number];

/** An amount of money in a currency's minor unit (1/100 THB, USD and EUR cents). */
export type Minor = bigint;
/** A price in minor units per kWh: 400n THB is 4.00 THB/kWh. */
export type PricePerKwh = bigint;

export type Side = 'buy' | 'sell';

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

/** The platform's token: 18 decimals, 1e9 NRG = 1e27 base units (past 64 bits: bigint only). */
export const NRG = 'NRG' as const;
/** What the journal keeps balances of: stable credits and the NRG token. */
export type Asset = Currency | typeof NRG;

/** An amount of money in a currency's minor unit (1/100 THB, USD and EUR cents; 10^-18 NRG). */
export type Minor = bigint;
/** A price in minor units per kWh: 400n THB is 4.00 THB/kWh. */
export type PricePerKwh = bigint;

export type Side = 'buy' | 'sell';

import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { EnvelopeId } from './ids.ts';

/**
 * Why the settlement refused an envelope. Stable strings: they appear in the rejections
 * table, in metrics labels and on the reject topic.
 */
export const REJECT_REASONS = [
  'too_large',
  'invalid_json',
  'schema',
  'non_canonical',
  'topic_mismatch',
  'unknown_gateway',
  'unknown_meter',
  'gateway_revoked',
  'bad_signature',
  'future_timestamp',
  'too_old',
  'span_too_long',
  'seq_regression',
  'broken_chain',
  'counter_regression',
  'time_regression',
  'exceeds_rated_power',
  'gateway_pending',
  'commit_failed',
  'duplicate',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/**
 * Refusals that may pass if the same envelope is sent again later, unchanged: a clock that was
 * ahead, a gateway or meter not yet active, a ledger failure. A gateway keeps such an envelope
 * and resends it with backoff; every other reason is final for those bytes (the gateway sets the
 * envelope aside as a dead letter, which an installer can requeue once the cause is fixed).
 */
export const RETRYABLE_REASONS: ReadonlySet<RejectReason> = new Set<RejectReason>([
  'future_timestamp',
  'gateway_pending',
  'unknown_meter',
  'commit_failed',
]);

export function isRetryable(reason: RejectReason): boolean {
  return RETRYABLE_REASONS.has(reason);
}

const Sha = Type.String({ pattern: '^[0-9a-f]{64}$' });

/** Settlement → gateway on the ack topic, published only after the ledger commit. */
export const AckSchema = Type.Object({
  v: Type.Literal(1),
  id: Sha,
  /** `duplicate`: every reading was already in the ledger; the gateway may drop it all the same. */
  status: Type.Union([Type.Literal('accepted'), Type.Literal('duplicate')]),
  readings: Type.Integer({ minimum: 0 }),
});
export type Ack = Omit<Static<typeof AckSchema>, 'id'> & { id: EnvelopeId };

/** Settlement → gateway on the reject topic. `id` is null when the payload was not an envelope. */
export const RejectionSchema = Type.Object({
  v: Type.Literal(1),
  id: Type.Union([Sha, Type.Null()]),
  reason: Type.Union(REJECT_REASONS.map((r) => Type.Literal(r))),
  detail: Type.String(),
  /**
   * Whether sending the same envelope again later may succeed (RETRYABLE_REASONS). Always sent
   * by this release; a reader meeting an older settlement that left it out uses isRetryable.
   */
  retryable: Type.Optional(Type.Boolean()),
});
export type Rejection = Omit<Static<typeof RejectionSchema>, 'id'> & { id: EnvelopeId | null };

/** Gateway status, retained; `offline` is the MQTT last will. */
export const StatusSchema = Type.Object({
  v: Type.Literal(1),
  state: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
  ts: Type.String(),
  outbox: Type.Optional(Type.Integer({ minimum: 0 })),
  /**
   * Whether the gateway trusts its clock enough to stamp readings (see docs/gateway.md, clock
   * rules); while it does not, it holds readings instead of sealing them.
   */
  clock: Type.Optional(Type.Union([Type.Literal('ok'), Type.Literal('before_release_floor'), Type.Literal('behind_last_reading')])),
});
export type GatewayStatus = Static<typeof StatusSchema>;

const ackCheck = TypeCompiler.Compile(AckSchema);
const rejectionCheck = TypeCompiler.Compile(RejectionSchema);

function parseWith<T>(check: { Check(v: unknown): boolean }, payload: Buffer | string, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString());
  } catch {
    throw new Error(`${what}: not JSON`);
  }
  if (!check.Check(value)) throw new Error(`${what}: does not match the schema`);
  return value as T;
}

export const parseAck = (p: Buffer | string): Ack => parseWith<Ack>(ackCheck, p, 'ack');
export const parseRejection = (p: Buffer | string): Rejection => parseWith<Rejection>(rejectionCheck, p, 'rejection');

/**
 * Money on the wire: a decimal string in the currency's major unit with exactly its minor digits
 * ("4.00" THB per kWh), never a JSON number, so it is exact on every platform.
 */
const Decimal = Type.String({ pattern: '^-?(0|[1-9][0-9]*)\\.[0-9]{2}$' });

/**
 * Settlement → anyone, retained on the market's price topic (`PriceSignalUpdated`): the
 * indicative price from the metered supply and demand of the market's last complete interval.
 */
export const PriceSignalMessageSchema = Type.Object({
  v: Type.Literal(1),
  event: Type.Literal('PriceSignalUpdated'),
  market: Type.String(),
  /** `currency` per kWh, e.g. "4.00". */
  price: Decimal,
  /** The previous signal's price; null for a market's first signal. */
  old_price: Type.Union([Decimal, Type.Null()]),
  currency: Type.String(),
  /** Metered supply / demand, clamped to [min_ratio, 1/min_ratio]. */
  ratio: Type.Number(),
  supply_wh: Type.Integer({ minimum: 0 }),
  demand_wh: Type.Integer({ minimum: 0 }),
  /** Start of the interval the supply and demand were metered in (ISO-8601, UTC). */
  interval_start: Type.Union([Type.String(), Type.Null()]),
  computed_at: Type.String(),
  valid_until: Type.String(),
});
export type PriceSignalMessage = Static<typeof PriceSignalMessageSchema>;

const priceSignalCheck = TypeCompiler.Compile(PriceSignalMessageSchema);
/** A price signal is a few hundred bytes; anything far larger on the topic is not one. */
export const MAX_PRICE_SIGNAL_BYTES = 4096;

/**
 * The price signal in a message heard on `market`'s price topic, or a sentence saying why it is
 * not one. Whoever may publish there, the message must match the schema, name that market (a
 * signal for another market on this topic was put there by someone else) and a currency of
 * three capital letters (it becomes part of a unit people read).
 */
export function parsePriceSignal(payload: Buffer | string, market: string): PriceSignalMessage | string {
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (bytes > MAX_PRICE_SIGNAL_BYTES) return `a ${bytes}-byte message is not a price signal (at most ${MAX_PRICE_SIGNAL_BYTES})`;
  let value: unknown;
  try {
    value = JSON.parse(payload.toString());
  } catch {
    return 'not JSON';
  }
  if (!priceSignalCheck.Check(value)) {
    const first = priceSignalCheck.Errors(value).First();
    return `not a PriceSignalUpdated message (${first ? `${first.path || '/'}: ${first.message}` : 'schema'})`;
  }
  if (value.market !== market) return `a signal for market ${JSON.stringify(value.market.slice(0, 64))} on ${market}'s topic`;
  if (!/^[A-Z]{3}$/.test(value.currency)) return `currency ${JSON.stringify(value.currency.slice(0, 16))} is not three capital letters`;
  return value;
}

/** Settlement → anyone on the market's auction topic (`AuctionCompleted`), once per auction. */
export const AuctionCompletedMessageSchema = Type.Object({
  v: Type.Literal(1),
  event: Type.Literal('AuctionCompleted'),
  market: Type.String(),
  auction_id: Type.String(),
  delivery_start: Type.String(),
  delivery_end: Type.String(),
  /** `currency` per kWh; null when bids and asks did not cross. */
  clearing_price: Type.Union([Decimal, Type.Null()]),
  currency: Type.String(),
  total_volume_wh: Type.Integer({ minimum: 0 }),
  trades_count: Type.Integer({ minimum: 0 }),
  orders_count: Type.Integer({ minimum: 0 }),
});
export type AuctionCompletedMessage = Static<typeof AuctionCompletedMessageSchema>;

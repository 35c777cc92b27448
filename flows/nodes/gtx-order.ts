import { isValidId } from '../../protocol/index.ts';
import { gtxSettingsOf } from './gtx-settings.ts';
import { NodeSettingsError } from './node-settings.ts';
import type { NodeAPI, NodeDef, NodeInstance, NodeMessage } from './red.ts';

/** An order as POST /api/v1/orders takes it (settlement/api/routes/market.ts). */
export interface OrderRequest {
  market: string;
  side: 'buy' | 'sell';
  energyKwh: string;
  limitPrice?: string;
  deliveryStart?: string;
}

export class OrderInputError extends Error {
  override readonly name = 'OrderInputError';
}

const ENERGY = /^(0|[1-9][0-9]*)(\.[0-9]{1,3})?$/;
const MONEY = /^(0|[1-9][0-9]*)(\.[0-9]+)?$/;
const REQUEST_TIMEOUT_MS = 15_000;
/** An order or a refusal is well under this; a larger answer is not settlement's. */
const MAX_ANSWER_BYTES = 64 * 1024;

/** A decimal for the API: a string as given, or a number written without rounding it. */
function decimal(v: unknown, field: string, re: RegExp, want: string): string {
  const s = typeof v === 'number' && Number.isFinite(v) && v >= 0 ? String(v) : v;
  if (typeof s !== 'string' || !re.test(s)) throw new OrderInputError(`msg.payload.${field} must be ${want}, got ${JSON.stringify(v)}`);
  return s;
}

/** msg.payload → the request body; anything else in the payload is left out. */
export function orderRequest(payload: unknown): OrderRequest {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new OrderInputError('msg.payload must be { market, side, energyKwh, limitPrice?, deliveryStart? }');
  }
  const p = payload as Record<string, unknown>;
  if (typeof p.market !== 'string' || !isValidId(p.market)) throw new OrderInputError(`msg.payload.market must be a market id, got ${JSON.stringify(p.market)}`);
  const side = typeof p.side === 'string' ? p.side.toLowerCase() : p.side;
  if (side !== 'buy' && side !== 'sell') throw new OrderInputError(`msg.payload.side must be "buy" or "sell", got ${JSON.stringify(p.side)}`);
  const req: OrderRequest = { market: p.market, side, energyKwh: decimal(p.energyKwh, 'energyKwh', ENERGY, 'kWh with at most 3 decimals, e.g. 1.5') };
  if (p.limitPrice !== undefined) req.limitPrice = decimal(p.limitPrice, 'limitPrice', MONEY, 'a price per kWh, e.g. "4.00"');
  if (p.deliveryStart !== undefined) {
    if (typeof p.deliveryStart !== 'string' || p.deliveryStart.length > 64 || Number.isNaN(Date.parse(p.deliveryStart))) {
      throw new OrderInputError(`msg.payload.deliveryStart must be an ISO-8601 time, got ${JSON.stringify(p.deliveryStart)}`);
    }
    req.deliveryStart = p.deliveryStart;
  }
  return req;
}

/** The body as text, or undefined once it passes `max` bytes (then the rest is not read). */
async function readAtMost(res: Response, max: number): Promise<string | undefined> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

type Answer = { kind: 'order'; order: Record<string, unknown> } | { kind: 'refused'; code: string; message: string };

/** Places the order; a refusal (4xx with settlement's {code, message}) is an answer, anything else throws. */
export async function placeOrder(apiUrl: string, apiKey: string, order: OrderRequest): Promise<Answer> {
  const url = new URL('/api/v1/orders', apiUrl);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify(order),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    redirect: 'error', // the key goes to the configured API and nowhere else
  });
  const text = await readAtMost(res, MAX_ANSWER_BYTES);
  if (text === undefined) throw new Error(`${url.origin} answered HTTP ${res.status} with more than ${MAX_ANSWER_BYTES} bytes: is this the settlement's API URL?`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${url.origin} answered HTTP ${res.status} without JSON: is this the settlement's API URL?`);
  }
  const obj = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  if (res.status === 201 && typeof obj.id === 'string') return { kind: 'order', order: obj };
  if (res.status >= 400 && res.status < 500 && typeof obj.code === 'string' && typeof obj.message === 'string') {
    return { kind: 'refused', code: obj.code.slice(0, 64), message: obj.message.slice(0, 1000) };
  }
  throw new Error(`${url.origin} answered HTTP ${res.status} unexpectedly`);
}

/**
 * `gtx-order`: places an order through settlement's API from msg.payload. Output 1: the created
 * order; output 2: a refusal, msg.payload = { code, message } (price_out_of_band,
 * insufficient_credits, …). An unreachable API or a malformed payload is a node error.
 */
export default function register(RED: NodeAPI): void {
  RED.nodes.registerType('gtx-order', function (this: NodeInstance, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    let api: { url: string; key: string } | undefined;
    try {
      const s = gtxSettingsOf(RED, def);
      if (!s.apiUrl) throw new NodeSettingsError('the GridTokenX settings name no settlement API URL');
      if (!s.apiKey) throw new NodeSettingsError('the GridTokenX settings have no API key (a prosumer key: gtx settlement api-key create)');
      api = { url: s.apiUrl, key: s.apiKey };
      node.status({});
    } catch (e) {
      node.status({ fill: 'red', shape: 'ring', text: 'settings' });
      node.error(`gtx-order: ${(e as Error).message}`);
    }
    node.on('input', (msg: NodeMessage, send, done) => {
      if (!api) return done('gtx-order: its settings are incomplete (see its status)');
      let order: OrderRequest;
      try {
        order = orderRequest(msg.payload);
      } catch (e) {
        return done((e as Error).message);
      }
      node.status({ fill: 'blue', shape: 'ring', text: `${order.side} ${order.energyKwh} kWh…` });
      placeOrder(api.url, api.key, order).then(
        (a) => {
          if (a.kind === 'order') {
            node.status({ fill: 'green', shape: 'dot', text: `${order.side} ${order.energyKwh} kWh: ${String(a.order.status)}` });
            send([{ ...msg, payload: a.order }, null]);
          } else {
            node.status({ fill: 'yellow', shape: 'ring', text: `refused: ${a.code}` });
            send([null, { ...msg, payload: { code: a.code, message: a.message } }]);
          }
          done();
        },
        (e: Error) => {
          node.status({ fill: 'red', shape: 'ring', text: 'API unreachable' });
          const cause = (e as Error & { cause?: { code?: string; message?: string } }).cause;
          const why = e.name === 'TimeoutError' ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : cause ? `cannot reach it (${cause.code ?? cause.message})` : e.message;
          done(`gtx-order: settlement API ${api!.url}: ${why}`);
        },
      );
    });
  });
}

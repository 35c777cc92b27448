import { isIPv6 } from 'node:net';
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import { Type } from '@sinclair/typebox';
import type { Logger } from 'pino';
import { ErrorSchema } from './routes/errors.ts';

/**
 * Rate limits on the API's write routes: every POST, PUT, PATCH and DELETE under /api/v1 draws
 * from one budget per caller and minute ([http] write_rate_limit_per_minute), so a script
 * flooding orders, votes or enrollment attempts is stopped while a person never notices. Reads
 * are not limited. The caller is the API key (its id) when the route takes one, since auth.ts
 * has checked it by then; otherwise (gateway enrollment, whose installer code is the credential)
 * the address, so codes cannot be guessed at speed.
 */

export const WRITE_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const WINDOW_MS = 60_000;
/** Callers tracked at once; beyond it the least recent is forgotten (its count starts again). */
const TRACKED_CALLERS = 10_000;

/** Whether a route draws from the write budget. */
export function isLimitedWrite(route: Pick<RouteOptions, 'method' | 'url'>): boolean {
  return [route.method].flat().some((m) => WRITE_METHODS.has(m)) && route.url.startsWith('/api/v1/');
}

/** The IPv6 address's /64 network (one home or host gets a whole /64); an IPv4 or IPv4-mapped address itself. */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!isIPv6(ip)) return ip;
  // An embedded IPv4 tail (64:ff9b::192.0.2.1) is two groups.
  const hex = ip.toLowerCase().replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) => `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`);
  const [head = '', tail] = hex.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/** Whose budget a request draws from: the authenticated key, else the address. */
export function callerKey(req: FastifyRequest): string {
  return req.principal ? `key:${req.principal.keyId}` : `ip:${addressKey(req.ip)}`;
}

/**
 * The 429 answer as write routes document it (the OpenAPI document shows it with its header).
 * A route that answers 429 for a reason of its own (`own`) keeps that meaning next to this one.
 */
export function tooManyRequests(perMinute: number, own?: string) {
  const budget = `too_many_requests: more than ${perMinute} write requests in a minute from this API key (or, without a key, this address). Retry-After says when to try again.`;
  return Type.Object(ErrorSchema.properties, {
    description: own ? `${own} Or ${budget}` : budget,
    headers: { 'retry-after': Type.Integer({ minimum: 0, description: 'seconds until the write budget is full again' }) },
  });
}

/**
 * Adds the limit to `app` (the root instance), before the route plugins: its onRoute hook marks
 * each route, which the plugin then reads. `perMinute` 0 turns limiting off.
 */
export function registerWriteRateLimit(app: FastifyInstance, perMinute: number, log: Logger): void {
  if (!Number.isInteger(perMinute) || perMinute < 0) throw new RangeError(`the write rate limit must be a whole number ≥ 0 a minute, got ${perMinute}`);
  if (perMinute === 0) return;
  const answer = tooManyRequests(perMinute);

  app.addHook('onRoute', (route) => {
    // A route's own rateLimit (an object or false) is left as it is.
    if (route.config?.rateLimit !== undefined) return;
    if (!isLimitedWrite(route)) {
      route.config = { ...route.config, rateLimit: false };
      return;
    }
    const response = route.schema?.response as Record<string, { description?: unknown } | undefined> | undefined;
    if (!response) return;
    const own = response[429]?.description;
    response[429] = typeof own === 'string' && own !== ErrorSchema.description ? tooManyRequests(perMinute, own) : answer;
  });

  // One warning per caller and window, not one per refused request.
  const warned = new Map<string, number>();
  app.register(rateLimit, {
    global: true,
    max: perMinute,
    timeWindow: WINDOW_MS,
    cache: TRACKED_CALLERS,
    // Runs as the route's own onRequest hook, after auth.ts's: req.principal is set by then.
    keyGenerator: callerKey,
    errorResponseBuilder: (_req, ctx) =>
      Object.assign(new Error(`too many write requests: at most ${ctx.max} a minute per API key (per address without one); try again in ${ctx.after}`), { statusCode: ctx.statusCode }),
    onExceeded: (req, key) => {
      const now = Date.now();
      if ((warned.get(key) ?? 0) > now - WINDOW_MS) return;
      if (warned.size >= TRACKED_CALLERS) warned.clear();
      warned.set(key, now);
      log.warn({ caller: key, ip: req.ip, method: req.method, url: req.url, limit: perMinute }, 'write rate limit reached');
    },
  });
}

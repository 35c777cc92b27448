import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { ApiDeps } from '../server.ts';
import { READERS, SCOPED_READERS } from '../auth.ts';
import { UNKNOWN_METER, unknownMeter, visibleMeter } from '../visibility.ts';
import { describedError } from './errors.ts';

/**
 * An instant in a query: an ISO-8601 date (UTC midnight) or a date-time with `Z` or an offset.
 * A space stands for the offset's `+`, which an unencoded `+` in a URL becomes.
 */
export const INSTANT = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:(Z)|([+\- ])(\d{2}):(\d{2})))?$/;
const DAY_MS = 24 * 3600_000;
const MAX_RANGE_DAYS = 31;
const MAX_RANGE_MS = MAX_RANGE_DAYS * DAY_MS;

/** The forms of an instant in a query, for parameter descriptions. */
export const FORMS =
  'an ISO-8601 date, 2026-11-01 (UTC midnight), or date-time with Z or an offset, 2026-11-01T06:00:00Z or 2026-11-01T13:00:00+07:00 (send + as %2B in a URL)';

export const IntervalQuery = Type.Object(
  {
    from: Type.Optional(
      Type.String({
        pattern: INSTANT.source,
        description: `Start of the range, inclusive: intervals that start at or after it. ${FORMS}. Default: to minus 24 hours.`,
        examples: ['2026-11-01', '2026-11-01T06:00:00Z', '2026-11-01T13:00:00+07:00'],
      }),
    ),
    to: Type.Optional(
      Type.String({
        pattern: INSTANT.source,
        description: `End of the range, exclusive: intervals that start before it. ${FORMS}. Default: now.`,
        examples: ['2026-11-02', '2026-11-02T06:00:00Z', '2026-11-02T13:00:00+07:00'],
      }),
    ),
  },
  {
    description: `Intervals that start in [from, to). from must be before to and at most ${MAX_RANGE_DAYS} days before it (400 bad_range); without either: the last 24 hours.`,
  },
);
export type IntervalQuery = Static<typeof IntervalQuery>;

export const MeterParams = Type.Object({ meter: Type.String({ minLength: 1, maxLength: 64, description: 'meter id' }) });
const MarketParams = Type.Object({ market: Type.String({ minLength: 1, maxLength: 64, description: 'market id' }) });

const BAD_INPUT = describedError(
  `bad_request: from or to is not a date or date-time of the documented forms; bad_range: from is not before to, or they are more than ${MAX_RANGE_DAYS} days apart.`,
);

/** ms epoch of an instant in one of the forms above, or undefined when it names no real date and time. */
export function parseInstant(text: string): number | undefined {
  const m = INSTANT.exec(text);
  if (!m) return undefined;
  const [y, mo, d, h = 0, mi = 0, s = 0] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((x) => (x === undefined ? undefined : Number(x)));
  if (y === undefined || mo === undefined || d === undefined) return undefined;
  const frac = m[7] === undefined ? 0 : Math.floor(Number(`0.${m[7]}`) * 1000);
  const sign = m[9] === '-' ? -1 : 1;
  const oh = Number(m[10] ?? 0);
  const om = Number(m[11] ?? 0);
  if (mo < 1 || mo > 12 || h > 23 || mi > 59 || s > 59 || oh > 23 || om > 59) return undefined;
  const t = new Date(0);
  // setUTCFullYear, not Date.UTC, which reads years 0..99 as 1900..1999.
  t.setUTCFullYear(y, mo - 1, d);
  if (t.getUTCDate() !== d) return undefined; // 2026-02-30 rolled over into March
  t.setUTCHours(h, mi, s, frac);
  return t.getTime() - sign * (oh * 60 + om) * 60_000;
}

type Range = { fromMs: number; toMs: number } | { code: 'bad_request' | 'bad_range'; message: string };

/** The [from, to) of an interval query: defaults, forms and the 31-day bound documented on IntervalQuery. */
export function rangeOf(q: IntervalQuery, nowMs: number): Range {
  const parsed: Record<'from' | 'to', number | undefined> = { from: undefined, to: undefined };
  for (const key of ['from', 'to'] as const) {
    const text = q[key];
    if (text === undefined) continue;
    const ms = parseInstant(text);
    if (ms === undefined) return { code: 'bad_request', message: `query parameter "${key}" is ${JSON.stringify(text)}, which is not a calendar date and time` };
    parsed[key] = ms;
  }
  const toMs = parsed.to ?? nowMs;
  const fromMs = parsed.from ?? toMs - DAY_MS;
  const iso = (ms: number) => new Date(ms).toISOString();
  if (!(fromMs < toMs)) return { code: 'bad_range', message: `from (${iso(fromMs)}) must be before to (${iso(toMs)})` };
  if (toMs - fromMs > MAX_RANGE_MS) {
    const days = Math.ceil((toMs - fromMs) / DAY_MS);
    return { code: 'bad_range', message: `from ${iso(fromMs)} to ${iso(toMs)} is more than ${MAX_RANGE_DAYS} days (${days}); ask for at most ${MAX_RANGE_DAYS} days at a time` };
  }
  return { fromMs, toMs };
}

/** Verified energy per interval: what pricing, auctions, RECs and rewards build on. Personal data: API key needed. */
export const energyRoutes: FastifyPluginAsync<ApiDeps> = async (app, { ledger }) => {
  app.get<{ Params: { market: string }; Querystring: IntervalQuery }>(
    '/markets/:market/intervals',
    {
      config: { roles: READERS },
      schema: {
        params: MarketParams,
        querystring: IntervalQuery,
        response: {
          200: Type.Array(
            Type.Object({
              start: Type.String(),
              supplyWh: Type.Integer(),
              demandWh: Type.Integer(),
              meters: Type.Integer(),
              /** Part of the interval's energy is estimated across gaps (docs/protocol.md, "Energy across a gap"). */
              estimated: Type.Boolean(),
              estimatedSupplyWh: Type.Integer(),
              estimatedDemandWh: Type.Integer(),
            }),
          ),
          400: BAD_INPUT,
          404: describedError('unknown_market: no market of this id is configured.'),
        },
      },
    },
    async (req, reply) => {
      const r = rangeOf(req.query, Date.now());
      if ('code' in r) return reply.code(400).send(r);
      if (!(await ledger.getMarket(req.params.market))) {
        return reply.code(404).send({ code: 'unknown_market', message: `no market ${JSON.stringify(req.params.market)}; markets are set in the settlement's config ([[markets]])` });
      }
      const rows = await ledger.marketIntervals(req.params.market, r.fromMs, r.toMs);
      return rows.map((x) => ({
        start: new Date(x.startMs).toISOString(),
        supplyWh: x.supplyWh,
        demandWh: x.demandWh,
        meters: x.meters,
        estimated: x.estSupplyWh !== 0 || x.estDemandWh !== 0,
        estimatedSupplyWh: x.estSupplyWh,
        estimatedDemandWh: x.estDemandWh,
      }));
    },
  );

  app.get<{ Params: { meter: string }; Querystring: IntervalQuery }>(
    '/meters/:meter/intervals',
    {
      // Scoped: a prosumer its own meters, an installer its customers' (visibleMeter).
      config: { roles: SCOPED_READERS },
      schema: {
        params: MeterParams,
        querystring: IntervalQuery,
        response: {
          200: Type.Array(
            Type.Object({
              start: Type.String(),
              importWh: Type.Integer(),
              exportWh: Type.Integer(),
              /** Part of importWh / exportWh is estimated across a gap; a late fill makes it exact. */
              estimated: Type.Boolean(),
              estimatedImportWh: Type.Integer(),
              estimatedExportWh: Type.Integer(),
            }),
          ),
          400: BAD_INPUT,
          404: UNKNOWN_METER,
        },
      },
    },
    async (req, reply) => {
      const r = rangeOf(req.query, Date.now());
      if ('code' in r) return reply.code(400).send(r);
      if (!(await visibleMeter(ledger, req.principal!, req.params.meter))) return reply.code(404).send(unknownMeter(req.params.meter));
      const rows = await ledger.intervalEnergy(req.params.meter, r.fromMs, r.toMs);
      return rows.map((x) => ({
        start: new Date(x.startMs).toISOString(),
        importWh: x.importWh,
        exportWh: x.exportWh,
        estimated: x.estImportWh !== 0 || x.estExportWh !== 0,
        estimatedImportWh: x.estImportWh,
        estimatedExportWh: x.estExportWh,
      }));
    },
  );

  app.get<{ Params: { meter: string } }>(
    '/meters/:meter/gaps',
    {
      config: { roles: SCOPED_READERS },
      schema: {
        params: MeterParams,
        response: {
          200: Type.Array(
            Type.Object({ fromSeq: Type.Integer(), toSeq: Type.Integer(), openedAt: Type.String(), estimated: Type.Boolean() }),
          ),
          404: UNKNOWN_METER,
        },
      },
    },
    async (req, reply) => {
      if (!(await visibleMeter(ledger, req.principal!, req.params.meter))) return reply.code(404).send(unknownMeter(req.params.meter));
      return (await ledger.gaps(req.params.meter)).map((g) => ({ fromSeq: g.fromSeq, toSeq: g.toSeq, openedAt: new Date(g.openedAtMs).toISOString(), estimated: g.estimated }));
    },
  );
};

import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { verifyMeterWindow } from '../../audit/verify-window.ts';
import { HandoverStore } from '../../registry/handovers.ts';
import { MeterStore, REJECTIONS_SCANNED } from '../../store/meter-store.ts';
import type { ApiDeps } from '../server.ts';
import { READERS, SCOPED_READERS } from '../auth.ts';
import { scopedAccounts, UNKNOWN_METER, unknownMeter, visibleMeter } from '../visibility.ts';
import { FORMS, INSTANT, MeterParams, parseInstant, rangeOf } from './energy.ts';
import { describedError, ErrorSchema } from './errors.ts';

/**
 * Meters, their verified readings and rejections, and the utility's verify action. Every key
 * role may call the reads, each seeing only what it may (visibility.ts): a prosumer the meters
 * of its own account, an installer its customers', utilities and admins all; a meter the caller
 * may not see is a 404 unknown_meter, like one that does not exist.
 */

const iso = (ms: number) => new Date(ms).toISOString();
const Instant = (description: string) => Type.String({ description, examples: ['2026-11-01T06:30:00.000Z'] });

const MeterJson = Type.Object({
  meter: Type.String(),
  gateway: Type.String({ description: 'the gateway that reports it' }),
  owner: Type.String({ description: 'the registry account that owns it' }),
  market: Type.String(),
  role: Type.String({ description: 'consumption, generation or bidirectional' }),
  model: Type.String(),
  readings: Type.Integer({ description: 'verified readings stored' }),
  lastSeq: Type.Integer({ description: 'seq of the newest verified reading; 0 without readings' }),
  lastReading: Type.Union(
    [
      Type.Object({
        seq: Type.Integer(),
        ts: Instant('when the meter was read'),
        importWh: Type.Integer(),
        exportWh: Type.Integer(),
        powerW: Type.Integer(),
        receivedAt: Instant('when the settlement received it'),
      }),
      Type.Null(),
    ],
    { description: 'the newest verified reading; null before the first' },
  ),
});

const MeterListQuery = Type.Object(
  {
    account: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "one owner's meters; a prosumer key sees only its own account, an installer key its customers'" })),
    gateway: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "one gateway's meters" })),
    after: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'the next page: meters with an id after this one (ids are in order)' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 2000, description: 'at most this many meters (default 500, at most 2000)' })),
  },
  { additionalProperties: false },
);

const ReadingJson = Type.Object({
  seq: Type.Integer(),
  ts: Instant('when the meter was read'),
  importWh: Type.Integer(),
  exportWh: Type.Integer(),
  powerW: Type.Integer(),
  voltageMilliV: Type.Optional(Type.Integer()),
  currentMilliA: Type.Optional(Type.Integer()),
  frequencyMilliHz: Type.Optional(Type.Integer()),
  envelopeId: Type.String({ description: 'the signed envelope it came in (gtx audit export --meter writes it out)' }),
  gateway: Type.String(),
  receivedAt: Instant('when the settlement received it'),
});

const ReadingsQuery = Type.Object(
  {
    from: Type.Optional(
      Type.String({ pattern: INSTANT.source, description: `readings with ts at or after it: ${FORMS}. Default: the first reading.`, examples: ['2026-11-01', '2026-11-01T06:00:00Z'] }),
    ),
    to: Type.Optional(Type.String({ pattern: INSTANT.source, description: `readings with ts before it: ${FORMS}. Default: no bound.`, examples: ['2026-11-02', '2026-11-02T06:00:00Z'] })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'at most this many, newest first (default 100, at most 1000)' })),
  },
  { additionalProperties: false },
);

const VerifyQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ pattern: INSTANT.source, description: `readings with ts at or after it: ${FORMS}. Default: to minus 24 hours.`, examples: ['2026-11-01', '2026-11-01T06:00:00Z'] })),
    to: Type.Optional(Type.String({ pattern: INSTANT.source, description: `readings with ts before it: ${FORMS}. Default: now.`, examples: ['2026-11-02', '2026-11-02T06:00:00Z'] })),
  },
  { additionalProperties: false, description: 'At most 31 days apart (400 bad_range).' },
);

const RejectionJson = Type.Object({
  id: Type.Integer(),
  reason: Type.String({ description: 'the reject reason sent to the gateway (docs/protocol.md)' }),
  detail: Type.String(),
  at: Instant('when the settlement received the refused envelope'),
  envelopeId: Type.Union([Type.String(), Type.Null()], { description: 'null when the payload was not an envelope' }),
  gateway: Type.Union([Type.String(), Type.Null()]),
});

const AuditProblem = Type.Object({
  kind: Type.String({ description: 'bad_signature, unknown_gateway, row_mismatch, hash_mismatch, broken_chain, unparseable, time_regression, counter_regression, exceeds_rated_power, handover_mismatch' }),
  seq: Type.Optional(Type.Integer()),
  envelopeId: Type.Optional(Type.String()),
  detail: Type.String(),
});

/** The most readings one verify request checks; a wider range checks its newest readings and says so. */
export const MAX_VERIFY_READINGS = 10_000;
/** Verifications running at once: each holds the event loop for up to a second or so. */
const MAX_CONCURRENT_VERIFIES = 2;
const PROBLEMS_SHOWN = 20;

const VerifyJson = Type.Object({
  meter: Type.String(),
  ok: Type.Boolean({ description: 'no problem found in what was checked' }),
  complete: Type.Boolean({ description: `false when the range held more than ${MAX_VERIFY_READINGS} readings: its newest ${MAX_VERIFY_READINGS} were checked (from says from where)` }),
  from: Instant('start of the range checked (inclusive)'),
  to: Instant('end of the range checked (exclusive)'),
  readingsChecked: Type.Integer(),
  envelopesChecked: Type.Integer(),
  firstSeq: Type.Union([Type.Integer(), Type.Null()]),
  lastSeq: Type.Union([Type.Integer(), Type.Null()]),
  gaps: Type.Integer({ description: 'runs of missing seqs in the range (reported, not failures)' }),
  problems: Type.Integer({ description: 'how many problems were found' }),
  firstProblem: Type.Union([AuditProblem, Type.Null()]),
  details: Type.Array(AuditProblem, { description: `the first ${PROBLEMS_SHOWN} problems, in seq order` }),
});


export const meterRoutes: FastifyPluginAsync<ApiDeps> = async (app, { ledger }) => {
  const meters = new MeterStore(ledger.db);
  const handovers = new HandoverStore(ledger.db);

  app.get<{ Querystring: Static<typeof MeterListQuery> }>(
    '/meters',
    {
      config: { roles: SCOPED_READERS },
      schema: {
        querystring: MeterListQuery,
        response: { 200: Type.Array(MeterJson, { description: 'in id order; a page ends at limit (ask again with after=)' }), 403: ErrorSchema },
      },
    },
    async (req, reply) => {
      const scope = scopedAccounts(req.principal!, req.query.account);
      if ('refuse' in scope) return reply.code(403).send(scope.refuse);
      const rows = await meters.list({
        accounts: scope.accounts,
        limit: req.query.limit ?? 500,
        ...(req.query.after !== undefined ? { after: req.query.after } : {}),
        ...(req.query.gateway !== undefined ? { gateways: [req.query.gateway] } : {}),
      });
      return rows.map((m) => ({
        meter: m.meter,
        gateway: m.gateway,
        owner: m.owner,
        market: m.market,
        role: m.role,
        model: m.model,
        readings: m.readings,
        lastSeq: m.lastReading?.seq ?? 0,
        lastReading: m.lastReading && {
          seq: m.lastReading.seq,
          ts: iso(m.lastReading.tsMs),
          importWh: m.lastReading.importWh,
          exportWh: m.lastReading.exportWh,
          powerW: m.lastReading.powerW,
          receivedAt: iso(m.lastReading.receivedAtMs),
        },
      }));
    },
  );

  app.get<{ Params: Static<typeof MeterParams>; Querystring: Static<typeof ReadingsQuery> }>(
    '/meters/:meter/readings',
    {
      config: { roles: SCOPED_READERS },
      schema: {
        params: MeterParams,
        querystring: ReadingsQuery,
        response: {
          200: Type.Array(ReadingJson, { description: 'newest first' }),
          400: describedError('bad_request: from or to is not a date or date-time of the documented forms; bad_range: from is not before to.'),
          404: UNKNOWN_METER,
        },
      },
    },
    async (req, reply) => {
      let fromMs = 0;
      let toMs = Number.MAX_SAFE_INTEGER;
      for (const key of ['from', 'to'] as const) {
        const text = req.query[key];
        if (text === undefined) continue;
        const ms = parseInstant(text);
        if (ms === undefined) return reply.code(400).send({ code: 'bad_request', message: `query parameter "${key}" is ${JSON.stringify(text)}, which is not a calendar date and time` });
        if (key === 'from') fromMs = ms;
        else toMs = ms;
      }
      if (!(fromMs < toMs)) return reply.code(400).send({ code: 'bad_range', message: `from (${iso(fromMs)}) must be before to (${iso(toMs)})` });
      if (!(await visibleMeter(ledger, req.principal!, req.params.meter))) return reply.code(404).send(unknownMeter(req.params.meter));
      const window = await meters.seqWindow(req.params.meter, fromMs, toMs);
      if (!window) return [];
      const rows = await meters.readings(req.params.meter, window.fromSeq, window.toSeq, req.query.limit ?? 100);
      return rows.map((r) => ({
        seq: r.seq,
        ts: r.ts,
        importWh: r.importWh,
        exportWh: r.exportWh,
        powerW: r.powerW,
        ...(r.voltageMilliV !== undefined ? { voltageMilliV: r.voltageMilliV } : {}),
        ...(r.currentMilliA !== undefined ? { currentMilliA: r.currentMilliA } : {}),
        ...(r.frequencyMilliHz !== undefined ? { frequencyMilliHz: r.frequencyMilliHz } : {}),
        envelopeId: r.envelopeId,
        gateway: r.gateway,
        receivedAt: iso(r.receivedAtMs),
      }));
    },
  );

  app.get<{ Params: Static<typeof MeterParams>; Querystring: { limit?: number } }>(
    '/meters/:meter/rejections',
    {
      config: { roles: SCOPED_READERS },
      schema: {
        description: `Refused envelopes that concern the meter: the kept samples (a burst, then one a minute per gateway and reason) of the gateways that reported it whose payload names it. The newest ${REJECTIONS_SCANNED} samples of those gateways are looked at.`,
        params: MeterParams,
        querystring: Type.Object(
          { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, description: 'at most this many, newest first (default 50, at most 200)' })) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(RejectionJson, { description: 'newest first' }), 404: UNKNOWN_METER },
      },
    },
    async (req, reply) => {
      const m = await visibleMeter(ledger, req.principal!, req.params.meter);
      if (!m) return reply.code(404).send(unknownMeter(req.params.meter));
      // The gateways that held the meter: its own, and those it was handed over from.
      const gateways = [...new Set([m.gateway, ...(await handovers.forMeter(m.id)).flatMap((h) => [h.oldGateway, h.newGateway])])];
      const rows = await meters.rejections(m.id, gateways, req.query.limit ?? 50);
      return rows.map((r) => ({ id: r.id, reason: r.reason, detail: r.detail, at: iso(r.receivedAtMs), envelopeId: r.envelopeId, gateway: r.gateway }));
    },
  );

  let verifying = 0;
  app.post<{ Params: Static<typeof MeterParams>; Querystring: Static<typeof VerifyQuery> }>(
    '/meters/:meter/verify',
    {
      config: { roles: READERS },
      schema: {
        description:
          `Re-checks the meter's signature chain from the ledger alone, as \`gtx audit verify\` does: every signed envelope, every stored reading against its signed original, the hash chain and the commit's rules between neighbours. ` +
          `Readings with ts in [from, to): default the last 24 hours, at most 31 days; at most ${MAX_VERIFY_READINGS} readings (the newest of the range, complete=false when there were more). ` +
          'The full audit of any range: gtx audit verify --meter ID.',
        params: MeterParams,
        querystring: VerifyQuery,
        response: {
          200: VerifyJson,
          400: describedError('bad_request: from or to is not a date or date-time of the documented forms; bad_range: from is not before to, or they are more than 31 days apart.'),
          404: UNKNOWN_METER,
          429: describedError('too_many_requests: other verifications are running; try again in a moment.'),
        },
      },
    },
    async (req, reply) => {
      const r = rangeOf(req.query, Date.now());
      if ('code' in r) return reply.code(400).send(r);
      if (!(await visibleMeter(ledger, req.principal!, req.params.meter))) return reply.code(404).send(unknownMeter(req.params.meter));
      if (verifying >= MAX_CONCURRENT_VERIFIES) {
        return reply.code(429).header('retry-after', '1').send({ code: 'too_many_requests', message: `${verifying} verifications are running; try again in a moment` });
      }
      verifying++;
      try {
        const { report, fromMs, toMs, complete } = await verifyMeterWindow(ledger, req.params.meter, { ...r, maxReadings: MAX_VERIFY_READINGS });
        const problem = (f: (typeof report.failures)[number]) => ({
          kind: f.kind,
          ...(f.seq !== undefined ? { seq: f.seq } : {}),
          ...(f.envelopeId !== undefined ? { envelopeId: f.envelopeId } : {}),
          detail: f.detail,
        });
        req.log.info({ meter: req.params.meter, ok: report.ok, readings: report.readingsChecked, problems: report.failures.length, key: req.principal?.keyId }, 'meter verified');
        return {
          meter: req.params.meter,
          ok: report.ok,
          complete,
          from: iso(fromMs),
          to: iso(toMs),
          readingsChecked: report.readingsChecked,
          envelopesChecked: report.envelopesChecked,
          firstSeq: report.firstSeq,
          lastSeq: report.lastSeq,
          gaps: report.gaps.length,
          problems: report.failures.length,
          firstProblem: report.failures[0] ? problem(report.failures[0]) : null,
          details: report.failures.slice(0, PROBLEMS_SHOWN).map(problem),
        };
      } finally {
        verifying--;
      }
    },
  );
};

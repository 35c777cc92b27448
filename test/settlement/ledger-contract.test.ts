import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GENESIS_PREV, gatewayId, meterId, readingHash, type Envelope, type Reading } from '../../protocol/index.ts';
import { splitIntoIntervals } from '../../settlement/energy/intervals.ts';
import { pruneRejections, recordRejections, rejectionCounts } from '../../settlement/ledger/rejection-store.ts';
import type { CommitOutcome, IntervalRow, Ledger, MeterContext, RejectionRecord, VerifiedEnvelope } from '../../settlement/ledger/ledger.ts';
import { loadMigrations } from '../../settlement/ledger/migrations.ts';
import { PostgresLedger } from '../../settlement/ledger/postgres.ts';
import type { AccountId, MarketId, MeterRecord } from '../../settlement/registry/registry.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../support/envelopes.ts';
import { engines, pgUrl, skipPostgres, type OpenedLedger } from '../support/ledgers.ts';
import { freshPostgresSchema } from '../support/services.ts';
import { seededRandom } from '../support/random.ts';

/**
 * What every Ledger implementation promises, run against each engine: SQLite always,
 * PostgreSQL when it is reachable (see test/support/services.ts). PostgreSQL also gets the
 * multi-worker cases at the end: two pools on one database, like two settlement workers.
 */

/** The registry's view of a test meter: 10 kW, 15-minute intervals in Bangkok. */
const CONTEXT: MeterContext = { ratedPowerW: 10_000, market: 'm1', timeZone: 'Asia/Bangkok', intervalMs: 900_000 };

const verified = (env: Envelope, receivedAtMs = Date.now(), context: MeterContext | ((meter: string) => MeterContext) = CONTEXT): VerifiedEnvelope =>
  verifiedEnvelope(env, context, receivedAtMs);

/** The readings of a VerifiedEnvelope as signed, without what verification added. */
const signedReadings = (env: VerifiedEnvelope): Reading[] => env.readings.map(({ hash: _hash, context: _context, ...r }) => r);

/** The next `n` readings of `meter`, chained, advancing the factory's head. */
function chain(f: EnvelopeFactory, meter: string, n: number): Reading[] {
  const rs: Reading[] = [];
  for (let i = 0; i < n; i++) {
    const r = f.nextReading(meter);
    f.advance(r);
    rs.push(r);
  }
  return rs;
}

async function register(ledger: Ledger, f: EnvelopeFactory): Promise<void> {
  await ledger.putGateway({ id: gatewayId(f.gateway), publicKeyPem: f.publicKeyPem, status: 'active', createdAtMs: 1_700_000_000_000 });
}

// ---- registry and interval helpers ---------------------------------------------------------

const NOW = 1_760_000_000_000;
const OWNER = 'acct-1' as AccountId;

async function seedRegistry(ledger: Ledger): Promise<void> {
  await ledger.putMarket({ id: 'm1' as MarketId, name: 'Market one', timeZone: 'Asia/Bangkok', intervalMinutes: 15 });
  await ledger.putAccount({ id: OWNER, name: 'Alice', createdAtMs: 1_700_000_000_000 });
}

async function issueCode(ledger: Ledger, codeHash: string, expiresAtMs = NOW + 3_600_000): Promise<void> {
  await ledger.putEnrollmentCode({ codeHash, market: 'm1' as MarketId, owner: OWNER, createdAtMs: NOW - 60_000, expiresAtMs, usedAtMs: null, usedBy: null });
}

function meterRec(id: string, gateway: string, over: Partial<MeterRecord> = {}): MeterRecord {
  return {
    id: meterId(id),
    gateway: gatewayId(gateway),
    model: 'eastron-sdm120',
    role: 'consumption',
    ratedPowerW: 10_000,
    energySource: null,
    market: 'm1' as MarketId,
    owner: OWNER,
    createdAtMs: NOW,
    ...over,
  };
}

function enrollInput(codeHash: string, gateway: string, meters: MeterRecord[], nowMs = NOW): Parameters<Ledger['enroll']>[0] {
  return {
    codeHash,
    nowMs,
    gateway: gatewayId(gateway),
    publicKeyPem: new EnvelopeFactory(gateway).publicKeyPem,
    mqttSecretHash: `scrypt$secret-of-${gateway}`,
    meters,
  };
}

/** 2025-01-06 12:00 in Bangkok (05:00 UTC): an interval boundary there. */
const T0 = Date.UTC(2025, 0, 6, 5, 0, 0);
const MIN = 60_000;

/** Chained readings of `meter` at [minutes after T0, importWh, exportWh], advancing the factory. */
function series(f: EnvelopeFactory, meter: string, points: Array<[number, number, number?]>): Reading[] {
  return points.map(([minute, importWh, exportWh = 0]) => {
    const r = f.nextReading(meter, { importWh, exportWh }, T0 + minute * MIN);
    f.advance(r);
    return r;
  });
}

/** Gaps as seq ranges (their opening time depends on when the test ran). */
const ranges = (gs: Array<{ fromSeq: number; toSeq: number }>) => gs.map(({ fromSeq, toSeq }) => ({ fromSeq, toSeq }));

/** The interval rows of a run of consecutive readings: each pair split once. */
function expectedIntervals(rs: Reading[], ctx: MeterContext = CONTEXT): IntervalRow[] {
  const sample = (r: Reading) => ({ tsMs: Date.parse(r.ts), importWh: r.importWh, exportWh: r.exportWh });
  const rows: IntervalRow[][] = [];
  for (let i = 1; i < rs.length; i++) {
    rows.push(splitIntoIntervals(sample(rs[i - 1]!), sample(rs[i]!), ctx.intervalMs, ctx.timeZone).map((e) => ({ ...e, estImportWh: 0, estExportWh: 0 })));
  }
  return sumRows(rows);
}

function sumRows(parts: IntervalRow[][]): IntervalRow[] {
  const byStart = new Map<number, IntervalRow>();
  for (const e of parts.flat()) {
    const row = byStart.get(e.startMs);
    if (row) {
      row.importWh += e.importWh;
      row.exportWh += e.exportWh;
    } else byStart.set(e.startMs, { ...e });
  }
  return [...byStart.values()].sort((a, b) => a.startMs - b.startMs);
}

const accepted = (env: VerifiedEnvelope, inserted: number, duplicates = 0): CommitOutcome => ({ status: 'accepted', id: env.id, inserted, duplicates });
const duplicate = (env: VerifiedEnvelope): CommitOutcome => ({ status: 'duplicate', id: env.id, readings: env.readings.length });

describe.each(engines)('$name ledger', (engine) => {
  describe.skipIf(engine.skip)('implements the Ledger contract', () => {
    let opened: OpenedLedger;
    let ledger: Ledger;
    let f: EnvelopeFactory;

    beforeEach(async () => {
      opened = await engine.open();
      ledger = opened.ledger;
      f = new EnvelopeFactory('gw-contract');
      await register(ledger, f);
    });
    afterEach(async () => {
      await opened?.cleanup();
    });

    it('reports its engine', () => {
      expect(ledger.engine).toBe(engine.name);
    });

    it('migrating again is a no-op, also from a second ledger object on the same store', async () => {
      const env = verified(f.next('m-1', 2));
      await ledger.commitEnvelopes([env]);
      await ledger.migrate();
      await ledger.migrate();
      const again = await opened.reopen();
      await again.migrate();
      expect(await again.counts()).toEqual({ envelopes: 1, readings: 2, rejections: 0 });
      expect(await ledger.commitEnvelopes([env])).toEqual([duplicate(env)]);
    });

    it('stores gateways and updates their status and key', async () => {
      // Optional fields left out are stored as null and read back as null.
      expect(await ledger.getGateway('gw-contract')).toEqual({
        id: 'gw-contract',
        publicKeyPem: f.publicKeyPem,
        status: 'active',
        createdAtMs: 1_700_000_000_000,
        mqttSecretHash: null,
        revokedAtMs: null,
      });
      expect(await ledger.getGateway('gw-nobody')).toBeUndefined();
      const other = new EnvelopeFactory('gw-contract');
      await ledger.putGateway({
        id: gatewayId('gw-contract'),
        publicKeyPem: other.publicKeyPem,
        status: 'revoked',
        createdAtMs: 1_800_000_000_000,
        mqttSecretHash: 'scrypt$abc',
        revokedAtMs: 1_800_000_000_500,
      });
      // The first registration time stays.
      expect(await ledger.getGateway('gw-contract')).toEqual({
        id: 'gw-contract',
        publicKeyPem: other.publicKeyPem,
        status: 'revoked',
        createdAtMs: 1_700_000_000_000,
        mqttSecretHash: 'scrypt$abc',
        revokedAtMs: 1_800_000_000_500,
      });
      await ledger.putGateway({ id: gatewayId('gw-contract'), publicKeyPem: other.publicKeyPem, status: 'pending', createdAtMs: 1, mqttSecretHash: 'scrypt$def' });
      expect(await ledger.getGateway('gw-contract')).toMatchObject({ status: 'pending', mqttSecretHash: 'scrypt$def', revokedAtMs: null });
      await ledger.putGateway({ id: gatewayId('gw-contract'), publicKeyPem: other.publicKeyPem, status: 'active', createdAtMs: 1 });
      expect(await ledger.getGateway('gw-contract')).toMatchObject({ status: 'active', mqttSecretHash: null, revokedAtMs: null });
    });

    it('commits a chained envelope and returns every field, large integers as numbers', async () => {
      // Counters near 2^53 whose increments the 10 kW meter can deliver (1000 Wh in 10 minutes).
      const t0 = Date.now() - 3_600_000;
      const r1 = f.nextReading(
        'm-1',
        { importWh: Number.MAX_SAFE_INTEGER - 2000, exportWh: 3_000_000_000, powerW: -4_200, voltageMilliV: 230_100, currentMilliA: 12_345, frequencyMilliHz: 50_010 },
        t0,
      );
      f.advance(r1);
      const r2 = f.nextReading('m-1', { importWh: Number.MAX_SAFE_INTEGER - 1000, exportWh: 3_000_000_001, voltageMilliV: 229_900 }, t0 + 600_000);
      f.advance(r2);
      const r3 = f.nextReading('m-1', { importWh: Number.MAX_SAFE_INTEGER - 1000, exportWh: 3_000_000_002, currentMilliA: Number.MAX_SAFE_INTEGER }, t0 + 1_200_000);
      f.advance(r3);
      const env = verified(f.sign([r1, r2, r3]), 1_764_064_800_123);
      expect(await ledger.commitEnvelopes([env])).toEqual([accepted(env, 3)]);

      const stored = await ledger.readings('m-1');
      expect(stored).toEqual(
        [r1, r2, r3].map((r) => ({ ...r, hash: readingHash(r), envelopeId: env.id, gateway: 'gw-contract', receivedAtMs: 1_764_064_800_123 })),
      );
      expect(typeof stored[0]!.importWh).toBe('number');
      expect(stored[2]!).not.toHaveProperty('voltageMilliV');
      const energy = await ledger.intervalEnergy('m-1', 0, Number.MAX_SAFE_INTEGER);
      expect(energy.reduce((n, e) => n + e.importWh, 0)).toBe(1000);
      expect(energy.reduce((n, e) => n + e.exportWh, 0)).toBe(2);
      expect(await ledger.envelopesWithMeter('m-1')).toEqual([
        { id: env.id, gateway: 'gw-contract', signed: env.signed, sig: Buffer.from(env.sig, 'base64'), receivedAtMs: 1_764_064_800_123, readingCount: 3 },
      ]);

      const r4 = f.nextReading('m-1', { exportWh: 3_000_000_002 }, t0 + 1_800_000);
      f.advance(r4);
      const next = verified(f.sign([r4]));
      expect(await ledger.commitEnvelopes([next])).toEqual([accepted(next, 1)]);
      expect((await ledger.readings('m-1')).map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    });

    it('is idempotent on the envelope id, across calls and within one batch', async () => {
      const env = verified(f.next('m-1', 2));
      expect(await ledger.commitEnvelopes([env])).toEqual([accepted(env, 2)]);
      expect(await ledger.commitEnvelopes([env])).toEqual([duplicate(env)]);
      const again = verified(f.next('m-1'));
      expect(await ledger.commitEnvelopes([again, again])).toEqual([accepted(again, 1), duplicate(again)]);
      expect(await ledger.counts()).toEqual({ envelopes: 2, readings: 3, rejections: 0 });
    });

    it('is idempotent on (meter, seq) across two different envelopes', async () => {
      const rs = chain(f, 'm-1', 2);
      const a = verified(f.sign(rs));
      const b = verified(f.sign([rs[1]!, rs[0]!]));
      const c = verified(f.sign([rs[1]!]));
      expect(a.id).not.toBe(b.id);
      expect(await ledger.commitEnvelopes([a])).toEqual([accepted(a, 2)]);
      expect(await ledger.commitEnvelopes([b, c])).toEqual([duplicate(b), duplicate(c)]);
      // An all-duplicate envelope leaves no envelope row behind.
      expect(await ledger.counts()).toEqual({ envelopes: 1, readings: 2, rejections: 0 });
      expect((await ledger.readings('m-1')).map((r) => r.envelopeId)).toEqual([a.id, a.id]);
    });

    it('rejects a seq already stored with other content, and a restarted chain, as seq_regression', async () => {
      const [r1, r2] = chain(f, 'm-1', 2) as [Reading, Reading];
      await ledger.commitEnvelopes([verified(f.sign([r1, r2]))]);

      const changed = verified(f.sign([{ ...r2, importWh: r2.importWh + 1 }]));
      const restarted = verified(f.sign([f.nextReading('m-1', { prev: GENESIS_PREV })]));
      const newFirst = verified(f.sign([{ ...r1, powerW: r1.powerW + 1 }]));
      const outcomes = await ledger.commitEnvelopes([changed, restarted, newFirst]);
      expect(outcomes.map((o) => o.status === 'rejected' && o.reason)).toEqual(['seq_regression', 'seq_regression', 'seq_regression']);
      expect(outcomes[0]).toMatchObject({ id: changed.id, detail: expect.stringMatching(/seq 2/) });
      expect(await ledger.counts()).toEqual({ envelopes: 1, readings: 2, rejections: 0 });
    });

    it('rejects a reading whose prev does not match seq-1 as broken_chain', async () => {
      await ledger.commitEnvelopes([verified(f.next('m-1', 2))]);
      const bad = verified(f.sign([f.nextReading('m-1', { prev: 'ab'.repeat(32) })]));
      expect(await ledger.commitEnvelopes([bad])).toEqual([
        { status: 'rejected', id: bad.id, reason: 'broken_chain', detail: expect.stringMatching(/seq 3 .*seq 2/) },
      ]);
      const wrongGenesis = verified(f.sign([{ ...f.nextReading('m-2'), prev: 'cd'.repeat(32) }]));
      expect((await ledger.commitEnvelopes([wrongGenesis]))[0]).toMatchObject({ status: 'rejected', reason: 'broken_chain' });
      expect(await ledger.counts()).toEqual({ envelopes: 1, readings: 2, rejections: 0 });
    });

    it('rejects a gap fill that does not link to the stored seq+1 as broken_chain', async () => {
      const [r1, r2, r3, r4] = chain(f, 'm-1', 4) as [Reading, Reading, Reading, Reading];
      const head = verified(f.sign([r1, r2]));
      const after = verified(f.sign([r4]));
      expect(await ledger.commitEnvelopes([head, after])).toEqual([accepted(head, 2), accepted(after, 1)]);
      // Links to seq 2 but is not the reading seq 4 was chained to.
      const fill = verified(f.sign([{ ...r3, importWh: r3.importWh + 1 }]));
      expect(await ledger.commitEnvelopes([fill])).toEqual([
        { status: 'rejected', id: fill.id, reason: 'broken_chain', detail: expect.stringMatching(/seq 4 does not link/) },
      ]);
      expect((await ledger.readings('m-1')).map((r) => r.seq)).toEqual([1, 2, 4]);
    });

    it('accepts a gap, then a fill that links on both sides', async () => {
      const [r1, r2, r3, r4] = chain(f, 'm-1', 4) as [Reading, Reading, Reading, Reading];
      const a = verified(f.sign([r1]), 1000);
      const c = verified(f.sign([r3, r4]), 2000);
      const b = verified(f.sign([r2]), 3000);
      expect(await ledger.commitEnvelopes([a, c])).toEqual([accepted(a, 1), accepted(c, 2)]);
      expect(await ledger.commitEnvelopes([b])).toEqual([accepted(b, 1)]);
      const rs = await ledger.readings('m-1');
      expect(rs.map((r) => [r.seq, r.envelopeId])).toEqual([
        [1, a.id],
        [2, b.id],
        [3, c.id],
        [4, c.id],
      ]);
      for (let i = 1; i < rs.length; i++) expect(rs[i]!.prev).toBe(rs[i - 1]!.hash);
    });

    it('commits the rest of a batch whose middle envelope is rejected, and keeps nothing of that one', async () => {
      const a = verified(f.next('m-1'));
      const good = f.nextReading('m-2');
      f.advance(good);
      const broken = { ...f.nextReading('m-2'), prev: 'ef'.repeat(32) };
      const b = verified(f.sign([good, broken]));
      const c = verified(f.next('m-1'));
      const outcomes = await ledger.commitEnvelopes([a, b, c]);
      expect(outcomes).toEqual([
        accepted(a, 1),
        { status: 'rejected', id: b.id, reason: 'broken_chain', detail: expect.any(String) },
        accepted(c, 1),
      ]);
      expect(await ledger.counts()).toEqual({ envelopes: 2, readings: 2, rejections: 0 });
      expect(await ledger.readings('m-2')).toEqual([]);
      expect(await ledger.envelopesWithMeter('m-2')).toEqual([]);
      // The good reading of the refused envelope was not stored: it can come alone.
      const alone = verified(f.sign([good]));
      expect(await ledger.commitEnvelopes([alone])).toEqual([accepted(alone, 1)]);
    });

    it('accepts an envelope mixing an already stored reading and a new one', async () => {
      const [r1, r2] = chain(f, 'm-1', 2) as [Reading, Reading];
      const first = verified(f.sign([r1]), 1000);
      const both = verified(f.sign([r1, r2]), 2000);
      expect(await ledger.commitEnvelopes([first])).toEqual([accepted(first, 1)]);
      expect(await ledger.commitEnvelopes([both])).toEqual([accepted(both, 1, 1)]);
      expect((await ledger.readings('m-1')).map((r) => r.envelopeId)).toEqual([first.id, both.id]);
      expect((await ledger.envelopesWithMeter('m-1')).map((e) => [e.id, e.readingCount])).toEqual([
        [first.id, 1],
        [both.id, 2],
      ]);
    });

    it('records rejection samples with the first bytes of the payload, its full size and digest, newest first; counts add up', async () => {
      const big = randomBytes(100 * 1024);
      const hour = 3_600_000;
      const sample = (r: RejectionRecord) =>
        recordRejections(ledger.db, { counts: [], samples: [{ ...r, payloadBytes: r.payload.length, payloadSha256: createHash('sha256').update(r.payload).digest('hex') }] }, 64 * 1024);
      await sample({
        receivedAtMs: 1000,
        topic: 'gtx/v1/gw/gw-contract/readings',
        gateway: 'gw-contract',
        envelopeId: null,
        reason: 'too_large',
        detail: 'payload of 102400 bytes exceeds the limit',
        payload: big,
      });
      const id = 'a1'.repeat(32) as VerifiedEnvelope['id'];
      // JSON.parse quotes the input in its message, NUL bytes included.
      await sample({
        receivedAtMs: 2000,
        topic: 'gtx/v1/gw/gw-x/readings',
        gateway: null,
        envelopeId: id,
        reason: 'invalid_json',
        detail: 'Unexpected token \u0000 in "{\u0000}"',
        payload: Buffer.from('{\u0000}'),
      });
      const all = await ledger.rejections();
      expect(all).toHaveLength(2);
      const [newest, oldest] = all as [(typeof all)[number], (typeof all)[number]];
      expect(newest.id).toBeGreaterThan(oldest.id);
      expect(oldest).toEqual({
        id: oldest.id,
        receivedAtMs: 1000,
        topic: 'gtx/v1/gw/gw-contract/readings',
        gateway: 'gw-contract',
        envelopeId: null,
        reason: 'too_large',
        detail: 'payload of 102400 bytes exceeds the limit',
        payloadBytes: 100 * 1024,
        payloadSha256: createHash('sha256').update(big).digest('hex'),
      });
      expect(newest).toMatchObject({ receivedAtMs: 2000, gateway: null, envelopeId: id, reason: 'invalid_json', payloadBytes: 3 });
      // PostgreSQL text cannot hold U+0000: the only liberty an engine may take with a detail.
      expect(newest.detail.replace(/\uFFFD/g, '\u0000')).toBe('Unexpected token \u0000 in "{\u0000}"');
      expect(await ledger.rejections(1)).toEqual([newest]);

      const stored = await opened.storedPayload(oldest.id);
      expect(stored.length).toBe(64 * 1024);
      expect(stored.equals(big.subarray(0, 64 * 1024))).toBe(true);
      expect((await opened.storedPayload(newest.id)).equals(Buffer.from('{\u0000}'))).toBe(true);
      // Counts are what every refusal adds to: per gateway, reason and hour.
      expect(await ledger.counts()).toEqual({ envelopes: 0, readings: 0, rejections: 0 });
      const counts = (n: number, hourMs = 0) => ({
        counts: [
          { gateway: 'gw-contract', reason: 'too_large' as const, hourMs, count: n },
          { gateway: '', reason: 'invalid_json' as const, hourMs, count: 1 },
        ],
        samples: [],
      });
      await recordRejections(ledger.db, counts(2), 64 * 1024);
      await recordRejections(ledger.db, counts(3), 64 * 1024);
      await recordRejections(ledger.db, counts(1, 5 * hour), 64 * 1024);
      expect(await ledger.counts()).toEqual({ envelopes: 0, readings: 0, rejections: 9 });
      expect(await rejectionCounts(ledger.db)).toEqual([
        { gateway: '', reason: 'invalid_json', count: 3 },
        { gateway: 'gw-contract', reason: 'too_large', count: 6 },
      ]);
      expect(await rejectionCounts(ledger.db, { sinceMs: 5 * hour + 10, gateway: 'gw-contract' })).toEqual([{ gateway: 'gw-contract', reason: 'too_large', count: 1 }]);
      // Retention: samples received and hours started before the cut go.
      expect(await pruneRejections(ledger.db, 1500)).toEqual({ samples: 1, counts: 2 });
      expect((await ledger.rejections()).map((r) => r.id)).toEqual([newest.id]);
      expect(await ledger.counts()).toEqual({ envelopes: 0, readings: 0, rejections: 2 });
    });

    it('lists meters in bytewise order with counts, readings by seq, envelopes by arrival then id', async () => {
      const ids = ['b-2', 'B-1', 'a_1', 'a.1', 'a-1', 'a1'];
      for (const m of ids) await ledger.commitEnvelopes([verified(f.next(m))]);
      await ledger.commitEnvelopes([verified(f.next('a.1', 3))]);
      expect(await ledger.meters()).toEqual(
        [...ids].sort().map((m) => ({ meter: m, readings: m === 'a.1' ? 4 : 1, lastSeq: m === 'a.1' ? 4 : 1 })),
      );

      // Arrival order differs from seq order; two envelopes arrive in the same millisecond.
      const [r1, r2, r3, r4] = chain(f, 'm-order', 4) as [Reading, Reading, Reading, Reading];
      const late = verified(f.sign([r4]), 5000);
      const early = verified(f.sign([r1]), 1000);
      const sameA = verified(f.sign([r2]), 3000);
      const sameB = verified(f.sign([r3]), 3000);
      await ledger.commitEnvelopes([late]);
      await ledger.commitEnvelopes([sameB, early, sameA]);
      expect((await ledger.readings('m-order')).map((r) => r.seq)).toEqual([1, 2, 3, 4]);
      const ties = [sameA.id, sameB.id].sort();
      expect((await ledger.envelopesWithMeter('m-order')).map((e) => e.id)).toEqual([early.id, ...ties, late.id]);
      expect(await ledger.counts()).toEqual({ envelopes: 11, readings: 13, rejections: 0 });
      expect(await ledger.readings('no-such-meter')).toEqual([]);
    });

    it('runs a job under an advisory lock, once at a time per key', async () => {
      expect(await ledger.withAdvisoryLock('pricing', async () => 42)).toBe(42);

      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const first = ledger.withAdvisoryLock('auction', async () => {
        await held;
        return 'first';
      });
      await new Promise((r) => setTimeout(r, 50));
      let ran = false;
      expect(await ledger.withAdvisoryLock('auction', async () => (ran = true))).toBeUndefined();
      expect(ran).toBe(false);
      // Another key is independent.
      expect(await ledger.withAdvisoryLock('pricing', async () => 'other key')).toBe('other key');
      release();
      expect(await first).toBe('first');

      // Released after a failure too; the failure is passed on.
      await expect(ledger.withAdvisoryLock('auction', async () => Promise.reject(new Error('job failed')))).rejects.toThrow('job failed');
      expect(await ledger.withAdvisoryLock('auction', async () => 'again')).toBe('again');
    });

    // ---- registry -----------------------------------------------------------------------

    it('stores markets, accounts and enrollment codes', async () => {
      expect(await ledger.getMarket('m1')).toBeUndefined();
      expect(await ledger.listMarkets()).toEqual([]);
      await ledger.putMarket({ id: 'm2' as MarketId, name: 'Market two', timeZone: 'Asia/Kolkata', intervalMinutes: 60 });
      await seedRegistry(ledger);
      await ledger.putMarket({ id: 'm2' as MarketId, name: 'Market 2', timeZone: 'Asia/Kolkata', intervalMinutes: 30 });
      expect(await ledger.getMarket('m1')).toEqual({ id: 'm1', name: 'Market one', timeZone: 'Asia/Bangkok', intervalMinutes: 15 });
      expect(await ledger.listMarkets()).toEqual([
        { id: 'm1', name: 'Market one', timeZone: 'Asia/Bangkok', intervalMinutes: 15 },
        { id: 'm2', name: 'Market 2', timeZone: 'Asia/Kolkata', intervalMinutes: 30 },
      ]);

      expect(await ledger.getAccount(OWNER)).toEqual({ id: OWNER, name: 'Alice', createdAtMs: 1_700_000_000_000 });
      expect(await ledger.getAccount('nobody')).toBeUndefined();

      const hash = 'a0'.repeat(32);
      await issueCode(ledger, hash);
      expect(await ledger.getEnrollmentCode(hash)).toEqual({
        codeHash: hash,
        market: 'm1',
        owner: OWNER,
        createdAtMs: NOW - 60_000,
        expiresAtMs: NOW + 3_600_000,
        usedAtMs: null,
        usedBy: null,
      });
      expect(await ledger.getEnrollmentCode('b0'.repeat(32))).toBeUndefined();
    });

    it('enrolls a gateway and its meters with a one-time code, all in one go', async () => {
      await seedRegistry(ledger);
      const hash = 'a1'.repeat(32);
      await issueCode(ledger, hash);
      const input = enrollInput(hash, 'gw-new', [meterRec('home-1-main', 'gw-new'), meterRec('home-1-pv', 'gw-new', { role: 'generation', ratedPowerW: 6_000, energySource: 'Solar' })]);
      expect(await ledger.enroll(input)).toEqual({ ok: true });

      expect(await ledger.getEnrollmentCode(hash)).toMatchObject({ usedAtMs: NOW, usedBy: 'gw-new' });
      expect(await ledger.getGateway('gw-new')).toEqual({
        id: 'gw-new',
        publicKeyPem: input.publicKeyPem,
        status: 'active',
        createdAtMs: NOW,
        mqttSecretHash: 'scrypt$secret-of-gw-new',
        revokedAtMs: null,
      });
      expect(await ledger.getMeter('home-1-pv')).toEqual(input.meters[1]);
      expect(await ledger.getMeter('no-such-meter')).toBeUndefined();
      expect(await ledger.listMeters({ gateway: 'gw-new' })).toEqual(input.meters);
      expect(await ledger.listMeters({ market: 'm1' })).toEqual(input.meters);
      expect(await ledger.listMeters({ gateway: 'gw-new', market: 'm1' })).toEqual(input.meters);
      expect(await ledger.listMeters({ market: 'm2' })).toEqual([]);
      expect(await ledger.listMeters({ gateway: 'gw-contract' })).toEqual([]);
      expect(await ledger.listMeters()).toEqual(input.meters);
    });

    it('refuses an unknown, used or expired code, an existing gateway, a taken meter, and writes nothing then', async () => {
      await seedRegistry(ledger);
      const [used, expiring, fresh] = ['a2', 'a3', 'a4'].map((x) => x.repeat(32)) as [string, string, string];
      await issueCode(ledger, used);
      await issueCode(ledger, expiring, NOW);
      await issueCode(ledger, fresh);
      expect(await ledger.enroll(enrollInput(used, 'gw-x', [meterRec('home-1-main', 'gw-x')]))).toEqual({ ok: true });
      const meters = await ledger.listMeters();
      const freshCode = await ledger.getEnrollmentCode(fresh);

      /** Nothing of a refused enrollment of gw-y is stored, and the fresh code is still unused. */
      const expectNothingWritten = async () => {
        expect(await ledger.getGateway('gw-y')).toBeUndefined();
        expect(await ledger.listMeters()).toEqual(meters);
        expect(await ledger.getEnrollmentCode(fresh)).toEqual(freshCode);
        expect(await ledger.getEnrollmentCode(used)).toMatchObject({ usedAtMs: NOW, usedBy: 'gw-x' });
      };
      const attempt = (code: string, gateway: string, ids: string[], nowMs = NOW) =>
        ledger.enroll(enrollInput(code, gateway, ids.map((id) => meterRec(id, gateway)), nowMs));

      expect(await attempt('ff'.repeat(32), 'gw-y', ['home-2-main'])).toEqual({
        ok: false,
        reason: 'code_unknown',
        detail: expect.stringMatching(/not recognised.*ask the operator/),
      });
      await expectNothingWritten();
      expect(await attempt(used, 'gw-y', ['home-2-main'])).toEqual({
        ok: false,
        reason: 'code_used',
        detail: expect.stringContaining(`already used by gateway gw-x at ${new Date(NOW).toISOString()}`),
      });
      await expectNothingWritten();
      // Valid up to, not at, its expiry.
      expect(await attempt(expiring, 'gw-y', ['home-2-main'])).toEqual({
        ok: false,
        reason: 'code_expired',
        detail: expect.stringContaining(`expired at ${new Date(NOW).toISOString()}`),
      });
      await expectNothingWritten();
      expect(await attempt(fresh, 'gw-contract', ['home-2-main'])).toEqual({
        ok: false,
        reason: 'gateway_exists',
        detail: expect.stringContaining('gateway gw-contract is already registered'),
      });
      await expectNothingWritten();
      expect(await attempt(fresh, 'gw-y', ['home-2-main', 'home-1-main'])).toEqual({
        ok: false,
        reason: 'meter_taken',
        detail: expect.stringContaining('meter home-1-main is already enrolled by gateway gw-x'),
      });
      await expectNothingWritten();
      expect(await attempt(fresh, 'gw-y', ['home-2-main', 'home-2-main'])).toEqual({
        ok: false,
        reason: 'meter_taken',
        detail: expect.stringContaining('meter home-2-main is listed twice'),
      });
      await expectNothingWritten();

      // The code survives the refusals, once.
      expect(await attempt(expiring, 'gw-y', ['home-2-main'], NOW - 1)).toEqual({ ok: true });
      expect(await attempt(fresh, 'gw-z', ['home-3-main'])).toEqual({ ok: true });
      expect((await ledger.listMeters()).map((m) => [m.id, m.gateway])).toEqual([
        ['home-1-main', 'gw-x'],
        ['home-2-main', 'gw-y'],
        ['home-3-main', 'gw-z'],
      ]);

      // A replacement gateway takes over the meters of a revoked one, and only then.
      const replacement = 'ee'.repeat(32);
      await issueCode(ledger, replacement);
      expect(await attempt(replacement, 'gw-new', ['home-3-main'])).toMatchObject({ ok: false, reason: 'meter_taken' });
      expect(await ledger.setGatewayStatus('gw-z', 'revoked', NOW)).toBe(true);
      expect(await attempt(replacement, 'gw-new', ['home-3-main'])).toEqual({ ok: true });
      expect(await ledger.getMeter('home-3-main')).toMatchObject({ gateway: 'gw-new' });
    });

    it('lets exactly one of several simultaneous enrollments with one code through', async () => {
      await seedRegistry(ledger);
      const hash = 'a5'.repeat(32);
      await issueCode(ledger, hash);
      const outcomes = await Promise.all(
        ['a', 'b', 'c', 'd', 'e'].map((x) => ledger.enroll(enrollInput(hash, `gw-${x}`, [meterRec(`meter-${x}`, `gw-${x}`)]))),
      );
      expect(outcomes.filter((o) => o.ok)).toHaveLength(1);
      expect(outcomes.filter((o) => !o.ok).map((o) => !o.ok && o.reason)).toEqual(['code_used', 'code_used', 'code_used', 'code_used']);
      const winner = (await ledger.getEnrollmentCode(hash))!.usedBy!;
      expect((await ledger.listMeters()).map((m) => m.gateway)).toEqual([winner]);
    });

    it('sets a gateway status; revoking stamps the time, once', async () => {
      expect(await ledger.setGatewayStatus('gw-contract', 'revoked', 1_800_000_000_000)).toBe(true);
      expect(await ledger.getGateway('gw-contract')).toMatchObject({ status: 'revoked', revokedAtMs: 1_800_000_000_000 });
      // Revoked again later: still revoked since the first time.
      expect(await ledger.setGatewayStatus('gw-contract', 'revoked', 1_800_000_999_000)).toBe(true);
      expect(await ledger.getGateway('gw-contract')).toMatchObject({ status: 'revoked', revokedAtMs: 1_800_000_000_000 });
      expect(await ledger.setGatewayStatus('gw-contract', 'active', 1_900_000_000_000)).toBe(true);
      expect(await ledger.getGateway('gw-contract')).toMatchObject({ status: 'active', revokedAtMs: null, createdAtMs: 1_700_000_000_000 });
      expect(await ledger.setGatewayStatus('gw-contract', 'pending', 1_900_000_000_001)).toBe(true);
      expect(await ledger.getGateway('gw-contract')).toMatchObject({ status: 'pending', revokedAtMs: null });
      expect(await ledger.setGatewayStatus('gw-nobody', 'revoked', 1)).toBe(false);
      expect(await ledger.getGateway('gw-nobody')).toBeUndefined();
    });

    // ---- chain checks with counters and time ---------------------------------------------

    it('rejects counter_regression, time_regression and exceeds_rated_power, keeping nothing of the envelope', async () => {
      const cases: Array<[string, [number, number, number], RegExp]> = [
        ['counter_regression', [30, 1150, 40], /seq 3 → 4: import counter went backwards \(1200 → 1150 Wh\)/],
        ['time_regression', [25, 1300, 40], /seq 3 → 4: timestamp does not advance/],
        // 5000 Wh in 5 minutes is 60 kW, from a 10 kW meter.
        ['exceeds_rated_power', [30, 6200, 40], /seq 3 → 4: 5000 Wh in 300 s exceeds what 10000 W rated power allows/],
        ['counter_regression', [30, 1300, 0], /seq 3 → 4: export counter went backwards \(40 → 0 Wh\)/],
      ];
      for (const [i, [reason, bad, detail]] of cases.entries()) {
        const meter = `m-bad-${i}`;
        // seq 1-2 stored; then an envelope whose first reading is fine (and would add energy)
        // and whose second is not.
        const [r1, r2, r3, r4] = series(f, meter, [[10, 1000, 40], [20, 1100, 40], [25, 1200, 40], bad]);
        const head = verified(f.sign([r1!, r2!]));
        const tail = verified(f.sign([r3!, r4!]));
        expect(await ledger.commitEnvelopes([head, tail])).toEqual([
          accepted(head, 2),
          { status: 'rejected', id: tail.id, reason, detail: expect.stringMatching(detail) },
        ]);
        expect((await ledger.readings(meter)).map((r) => r.seq)).toEqual([1, 2]);
        expect(await ledger.intervalEnergy(meter, 0, Number.MAX_SAFE_INTEGER)).toEqual(expectedIntervals([r1!, r2!]));
      }
      // Checked against the stored reading after a gap fill too: seq 2 → 3 goes backwards.
      const [g1, g2, g3] = series(f, 'm-bad-fill', [[0, 1000], [10, 1500], [20, 1200]]);
      const ends = verified(f.sign([g1!, g3!]));
      const fill = verified(f.sign([g2!]));
      expect(await ledger.commitEnvelopes([ends, fill])).toEqual([
        accepted(ends, 2),
        { status: 'rejected', id: fill.id, reason: 'counter_regression', detail: expect.stringMatching(/seq 2 → 3: import counter went backwards/) },
      ]);
      expect(await ledger.intervalEnergy('m-bad-fill', 0, Number.MAX_SAFE_INTEGER)).toEqual([]);
      expect(await ledger.counts()).toEqual({ envelopes: cases.length + 1, readings: 2 * cases.length + 2, rejections: 0 });
    });

    // ---- interval energy ------------------------------------------------------------------

    it('splits the energy between two readings over the intervals they touch, by time, summing exactly', async () => {
      // 12:12, 12:22, 12:47, 13:00 (on a boundary), 13:03 in Bangkok.
      const rs = series(f, 'm-split', [[12, 1000, 0], [22, 1300, 50], [47, 1301, 50], [60, 1401, 50], [63, 1431, 57]]);
      const a = verified(f.sign(rs.slice(0, 2)));
      const b = verified(f.sign(rs.slice(2)));
      expect(await ledger.commitEnvelopes([a, b])).toEqual([accepted(a, 2), accepted(b, 3)]);
      const rows = await ledger.intervalEnergy('m-split', 0, Number.MAX_SAFE_INTEGER);
      expect(rows).toMatchObject([
        // 12:12 → 12:22: 3 of 10 minutes before 12:15.
        { startMs: T0, importWh: 90, exportWh: 15 },
        // 7 minutes of the first span, 8 of the second's 25 (its 1 Wh goes to the largest share, 12:30).
        { startMs: T0 + 15 * MIN, importWh: 210, exportWh: 35 },
        { startMs: T0 + 30 * MIN, importWh: 1, exportWh: 0 },
        // 12:45 → 12:47 (no energy) and 12:47 → 13:00: a reading on a boundary closes the interval.
        { startMs: T0 + 45 * MIN, importWh: 100, exportWh: 0 },
        { startMs: T0 + 60 * MIN, importWh: 30, exportWh: 7 },
      ]);
      expect(rows.reduce((n, r) => n + r.importWh, 0)).toBe(1431 - 1000);
      expect(rows.reduce((n, r) => n + r.exportWh, 0)).toBe(57);
      // [from, to) on interval starts.
      expect((await ledger.intervalEnergy('m-split', T0 + 15 * MIN, T0 + 45 * MIN)).map((r) => r.startMs)).toEqual([T0 + 15 * MIN, T0 + 30 * MIN]);
      expect(await ledger.intervalEnergy('m-split', T0 + 61 * MIN, T0 + 120 * MIN)).toEqual([]);
      expect(await ledger.intervalEnergy('no-such-meter', 0, Number.MAX_SAFE_INTEGER)).toEqual([]);
    });

    it("aligns intervals in the market's time zone", async () => {
      // Kolkata is UTC+05:30: hours there start at half past in UTC.
      const kolkata: MeterContext = { ratedPowerW: 10_000, market: 'in', timeZone: 'Asia/Kolkata', intervalMs: 3_600_000 };
      const rs = series(f, 'm-in', [[-10, 0], [50, 600]]);
      await ledger.commitEnvelopes([verified(f.sign(rs), Date.now(), kolkata)]);
      expect(await ledger.intervalEnergy('m-in', 0, Number.MAX_SAFE_INTEGER)).toMatchObject([
        { startMs: T0 - 30 * MIN, importWh: 400, exportWh: 0 },
        { startMs: T0 + 30 * MIN, importWh: 200, exportWh: 0 },
      ]);
      expect(await ledger.marketIntervals('in', 0, Number.MAX_SAFE_INTEGER)).toMatchObject([
        { startMs: T0 - 30 * MIN, supplyWh: 0, demandWh: 400, meters: 1 },
        { startMs: T0 + 30 * MIN, supplyWh: 0, demandWh: 200, meters: 1 },
      ]);
    });

    it('counts the same energy when a gap is filled late as when readings arrive in order, and lists the gaps meanwhile', async () => {
      const points: Array<[number, number, number]> = [[1, 1000, 0], [7, 1100, 3], [16, 1250, 9], [29, 1333, 9], [31, 1340, 20], [44, 1500, 20], [58, 1777, 21], [61, 1800, 40], [90, 2500, 41]];
      const inOrder = series(f, 'm-order', points);
      const late = series(f, 'm-late', points);
      for (const r of inOrder) await ledger.commitEnvelopes([verified(f.sign([r]))]);
      const expected = expectedIntervals(inOrder);
      expect(await ledger.intervalEnergy('m-order', 0, Number.MAX_SAFE_INTEGER)).toEqual(expected);
      expect(expected.reduce((n, r) => n + r.importWh, 0)).toBe(1500);

      const env = (seqs: number[]) => verified(f.sign(seqs.map((s) => late[s - 1]!)));
      const fill34 = env([3, 4]);
      await ledger.commitEnvelopes([env([1, 2]), env([5]), env([8, 9])]);
      expect(ranges(await ledger.gaps('m-late'))).toEqual([
        { fromSeq: 3, toSeq: 4 },
        { fromSeq: 6, toSeq: 7 },
      ]);
      // Only pairs with both ends stored count: 1-2 and 8-9; nothing is guessed across a gap.
      expect(await ledger.intervalEnergy('m-late', 0, Number.MAX_SAFE_INTEGER)).toEqual(sumRows([expectedIntervals(late.slice(0, 2)), expectedIntervals(late.slice(7, 9))]));
      await ledger.commitEnvelopes([fill34]);
      expect(ranges(await ledger.gaps('m-late'))).toEqual([{ fromSeq: 6, toSeq: 7 }]);
      await ledger.commitEnvelopes([env([7])]);
      expect(ranges(await ledger.gaps('m-late'))).toEqual([{ fromSeq: 6, toSeq: 6 }]);
      await ledger.commitEnvelopes([env([6])]);
      expect(ranges(await ledger.gaps('m-late'))).toEqual([]);
      expect(await ledger.intervalEnergy('m-late', 0, Number.MAX_SAFE_INTEGER)).toEqual(expected);

      // Resends and regroupings add nothing.
      const regrouped = env([5, 6, 7]);
      expect(await ledger.commitEnvelopes([fill34, regrouped])).toEqual([duplicate(fill34), duplicate(regrouped)]);
      expect(await ledger.intervalEnergy('m-late', 0, Number.MAX_SAFE_INTEGER)).toEqual(expected);
    });

    it('lists missing seq ranges between the first and the last stored reading', async () => {
      expect(ranges(await ledger.gaps('no-such-meter'))).toEqual([]);
      const rs = chain(f, 'm-gaps', 12);
      const at = (...seqs: number[]) => verified(f.sign(seqs.map((s) => rs[s - 1]!)));
      await ledger.commitEnvelopes([at(3), at(4, 5), at(9), at(12)]);
      expect(ranges(await ledger.gaps('m-gaps'))).toEqual([
        { fromSeq: 6, toSeq: 8 },
        { fromSeq: 10, toSeq: 11 },
      ]);
      await ledger.commitEnvelopes([at(7), at(1)]);
      expect(ranges(await ledger.gaps('m-gaps'))).toEqual([
        { fromSeq: 2, toSeq: 2 },
        { fromSeq: 6, toSeq: 6 },
        { fromSeq: 8, toSeq: 8 },
        { fromSeq: 10, toSeq: 11 },
      ]);
      await ledger.commitEnvelopes([at(2, 6, 8, 10, 11)]);
      expect(ranges(await ledger.gaps('m-gaps'))).toEqual([]);
    });

    it('sums metered supply (export) and demand (import) of a market per interval across its meters', async () => {
      const m2: MeterContext = { ...CONTEXT, market: 'm2' };
      const home = series(f, 'home-a', [[0, 1000, 0], [10, 1200, 0], [25, 1500, 0]]);
      const pv = series(f, 'pv-b', [[5, 0, 7000], [20, 0, 7600], [28, 0, 7900]]);
      const both = series(f, 'bidi-c', [[2, 50, 50], [12, 80, 170]]);
      const elsewhere = series(f, 'other-d', [[0, 0, 0], [20, 900, 900]]);
      await ledger.commitEnvelopes([
        verified(f.sign([...home, ...pv, ...both])),
        verified(f.sign(elsewhere), Date.now(), m2),
      ]);
      const rowsOf = async (m: string) => ledger.intervalEnergy(m, 0, Number.MAX_SAFE_INTEGER);
      const meters = await Promise.all(['home-a', 'pv-b', 'bidi-c'].map(rowsOf));
      const starts = [...new Set(meters.flat().map((r) => r.startMs))].sort((a, b) => a - b);
      const expected = starts.map((startMs) => {
        const here = meters.map((rows) => rows.find((r) => r.startMs === startMs)).filter((r) => r !== undefined);
        return {
          startMs,
          supplyWh: here.reduce((n, r) => n + r.exportWh, 0),
          demandWh: here.reduce((n, r) => n + r.importWh, 0),
          estSupplyWh: 0,
          estDemandWh: 0,
          meters: here.length,
        };
      });
      expect(expected.map((r) => r.startMs)).toEqual([T0, T0 + 15 * MIN]);
      expect(expected.map((r) => r.meters)).toEqual([3, 2]);
      expect(await ledger.marketIntervals('m1', 0, Number.MAX_SAFE_INTEGER)).toEqual(expected);
      const total = (await ledger.marketIntervals('m1', 0, Number.MAX_SAFE_INTEGER)).reduce(
        (t, r) => ({ supply: t.supply + r.supplyWh, demand: t.demand + r.demandWh }),
        { supply: 0, demand: 0 },
      );
      expect(total).toEqual({ supply: 900 + 120, demand: 500 + 30 });
      expect(await ledger.marketIntervals('m1', T0 + 15 * MIN, T0 + 30 * MIN)).toEqual([expected[1]]);
      expect(await ledger.marketIntervals('m2', 0, Number.MAX_SAFE_INTEGER)).toMatchObject([
        { startMs: T0, supplyWh: 900 * 15 / 20, demandWh: 900 * 15 / 20, meters: 1 },
        { startMs: T0 + 15 * MIN, supplyWh: 900 * 5 / 20, demandWh: 900 * 5 / 20, meters: 1 },
      ]);
      expect(await ledger.marketIntervals('nowhere', 0, Number.MAX_SAFE_INTEGER)).toEqual([]);
    });
  });
});


function shuffled<T>(xs: T[], rand: () => number): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A worker's run: its envelopes in random batches, `lanes` commits in flight at a time. */
async function runWorker(ledger: Ledger, envs: VerifiedEnvelope[], rand: () => number, lanes: number): Promise<Map<string, CommitOutcome>> {
  const batches: VerifiedEnvelope[][] = [];
  const queue = shuffled(envs, rand);
  while (queue.length > 0) batches.push(queue.splice(0, 1 + Math.floor(rand() * 12)));
  const outcomes = new Map<string, CommitOutcome>();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      for (let batch = batches.shift(); batch; batch = batches.shift()) {
        const out = await ledger.commitEnvelopes(batch);
        out.forEach((o) => outcomes.set(o.id, o));
      }
    }),
  );
  return outcomes;
}

describe.skipIf(skipPostgres)('PostgreSQL ledger shared by two workers', () => {
  let schema: Awaited<ReturnType<typeof freshPostgresSchema>>;
  let workers: PostgresLedger[];
  const seed = Date.now() % 1_000_000;

  beforeEach(async () => {
    schema = await freshPostgresSchema(pgUrl!);
    workers = [new PostgresLedger(schema.url, { maxConnections: 4 }), new PostgresLedger(schema.url, { maxConnections: 4 })];
    // Both migrate at once, as two processes starting together do.
    await Promise.all(workers.map((w) => w.migrate()));
  });
  afterEach(async () => {
    for (const w of workers ?? []) await w.close();
    await schema?.drop();
  });

  it('migrates once when both start at the same moment', async () => {
    const c = new pg.Client({ connectionString: schema.url });
    await c.connect();
    try {
      const { rows } = await c.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(rows.map((r) => r.version)).toEqual(loadMigrations('postgres').map((m) => m.version));
    } finally {
      await c.end();
    }
  });

  /** 200 envelopes of 1 to 3 readings over 5 meters of 2 gateways, one consistent chain per meter. */
  async function workload(): Promise<{ envs: VerifiedEnvelope[]; readings: Map<string, Reading[]> }> {
    const rand = seededRandom(seed);
    const gws = [new EnvelopeFactory('gw-worker-a'), new EnvelopeFactory('gw-worker-b')];
    for (const g of gws) await register(workers[0]!, g);
    const meters = ['m-0', 'm-1', 'm-2', 'm-3', 'm-4'];
    const readings = new Map<string, Reading[]>(meters.map((m) => [m, []]));
    const envs: VerifiedEnvelope[] = [];
    for (let i = 0; i < 200; i++) {
      const meter = meters[i % meters.length]!;
      const g = gws[i % meters.length < 3 ? 0 : 1]!;
      const rs = chain(g, meter, 1 + Math.floor(rand() * 3));
      readings.get(meter)!.push(...rs);
      envs.push(verified(g.sign(rs), 1_000 + i));
    }
    return { envs, readings };
  }

  async function expectEachReadingOnce(readings: Map<string, Reading[]>): Promise<void> {
    for (const [meter, rs] of readings) {
      const stored = await workers[1]!.readings(meter);
      expect(stored.map((r) => r.hash), `meter ${meter}, seed ${seed}`).toEqual(rs.map((r) => readingHash(r)));
    }
  }

  it('commits the same 200 envelopes from both workers: every reading once, each envelope accepted on exactly one side', async () => {
    const { envs, readings } = await workload();
    const [a, b] = await Promise.all([
      runWorker(workers[0]!, envs, seededRandom(seed + 1), 2),
      runWorker(workers[1]!, envs, seededRandom(seed + 2), 2),
    ]);
    for (const env of envs) {
      const pair = [a.get(env.id), b.get(env.id)];
      const statuses = pair.map((o) => o?.status).sort();
      expect(statuses, `envelope ${env.id}, seed ${seed}`).toEqual(['accepted', 'duplicate']);
      const acc = pair.find((o) => o?.status === 'accepted');
      expect(acc).toEqual(accepted(env, env.readings.length));
    }
    await expectEachReadingOnce(readings);
    const total = [...readings.values()].reduce((n, rs) => n + rs.length, 0);
    expect(await workers[0]!.counts()).toEqual({ envelopes: 200, readings: total, rejections: 0 });
  }, 60_000);

  it('commits the same readings batched differently by each worker: every reading once, never rejected', async () => {
    const { envs, readings } = await workload();
    // Worker B receives the same readings regrouped: a pair of neighbouring envelopes per envelope.
    const f = new Map(['gw-worker-a', 'gw-worker-b'].map((g) => [g, new EnvelopeFactory(g)]));
    const regrouped: VerifiedEnvelope[] = [];
    for (let i = 0; i + 5 < envs.length; i += 10) {
      const x = envs[i]!;
      const y = envs[i + 5]!; // the same meter's next envelope
      const rs = [...signedReadings(x), ...signedReadings(y)];
      regrouped.push(verified(f.get(x.gateway)!.sign(rs, x.gateway), 5_000 + i));
    }
    const rest = envs.filter((_, i) => i % 10 !== 0 && i % 10 !== 5);
    const [a, b] = await Promise.all([
      runWorker(workers[0]!, envs, seededRandom(seed + 3), 2),
      runWorker(workers[1]!, [...regrouped, ...rest], seededRandom(seed + 4), 2),
    ]);
    const all = [...a.values(), ...b.values()];
    expect(all.filter((o) => o.status === 'rejected'), `seed ${seed}`).toEqual([]);
    const inserted = all.reduce((n, o) => n + (o.status === 'accepted' ? o.inserted : 0), 0);
    const total = [...readings.values()].reduce((n, rs) => n + rs.length, 0);
    expect(inserted, `seed ${seed}`).toBe(total);
    await expectEachReadingOnce(readings);
    expect((await workers[0]!.counts()).readings).toBe(total);
  }, 60_000);

  it('decides conflicting readings of one meter from two workers consistently: one accepted, one refused, the chain intact', async () => {
    const gw = new EnvelopeFactory('gw-worker-a');
    const forked = new EnvelopeFactory('gw-worker-a');
    await register(workers[0]!, gw);
    const meters = Array.from({ length: 40 }, (_, i) => `fork-${i}`);
    const sideA: VerifiedEnvelope[] = [];
    const sideB: VerifiedEnvelope[] = [];
    for (const [i, m] of meters.entries()) {
      const [r1] = chain(gw, m, 1) as [Reading];
      await workers[0]!.commitEnvelopes([verified(gw.sign([r1]))]);
      forked.advance(r1);
      const [r2] = chain(gw, m, 1) as [Reading];
      // The other side's reading 2 differs; on odd meters it sends only its reading 3, which
      // links to its own reading 2 and so cannot sit next to side A's.
      const f2 = forked.nextReading(m, { powerW: r2.powerW + 1 });
      forked.advance(f2);
      const [f3] = chain(forked, m, 1) as [Reading];
      sideA.push(verified(gw.sign([r2])));
      sideB.push(verified(forked.sign([i % 2 === 0 ? f2 : f3])));
    }
    // Each meter is a race of its own: both workers commit at the same moment.
    const a: CommitOutcome[] = [];
    const b: CommitOutcome[] = [];
    for (let i = 0; i < meters.length; i++) {
      const [oa, ob] = await Promise.all([workers[0]!.commitEnvelopes([sideA[i]!]), workers[1]!.commitEnvelopes([sideB[i]!])]);
      a.push(...oa);
      b.push(...ob);
    }
    for (const [i, m] of meters.entries()) {
      const statuses = [a[i]!.status, b[i]!.status].sort();
      expect(statuses, `meter ${m}`).toEqual(['accepted', 'rejected']);
      const refused = [a[i]!, b[i]!].find((o) => o.status === 'rejected');
      expect(refused).toMatchObject({ reason: i % 2 === 0 ? 'seq_regression' : 'broken_chain' });
      const stored = await workers[0]!.readings(m);
      for (let k = 1; k < stored.length; k++) {
        if (stored[k]!.seq === stored[k - 1]!.seq + 1) expect(stored[k]!.prev, `meter ${m}`).toBe(stored[k - 1]!.hash);
      }
    }
  }, 60_000);

  it('runs a job under the same advisory lock key on exactly one worker at a time', async () => {
    for (let round = 0; round < 5; round++) {
      let runs = 0;
      const job = async (name: string) => {
        runs++;
        await new Promise((r) => setTimeout(r, 150));
        return name;
      };
      const results = await Promise.all([workers[0]!.withAdvisoryLock('auction:thailand_central', () => job('a')), workers[1]!.withAdvisoryLock('auction:thailand_central', () => job('b'))]);
      expect(runs).toBe(1);
      expect(results.filter((r) => r !== undefined)).toHaveLength(1);
    }
    // Released: the other worker gets it now.
    expect(await workers[1]!.withAdvisoryLock('auction:thailand_central', async () => 'free')).toBe('free');
  });

  it('keeps advisory locks of ledgers in different schemas apart', async () => {
    const other = await freshPostgresSchema(pgUrl!);
    const stranger = new PostgresLedger(other.url);
    try {
      await stranger.migrate();
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const running = workers[0]!.withAdvisoryLock('pricing', () => held);
      await new Promise((r) => setTimeout(r, 50));
      expect(await workers[1]!.withAdvisoryLock('pricing', async () => 'same schema')).toBeUndefined();
      expect(await stranger.withAdvisoryLock('pricing', async () => 'other schema')).toBe('other schema');
      release();
      await running;
    } finally {
      await stranger.close();
      await other.drop();
    }
  });

  it('lets exactly one of two workers enroll with one code when both try at the same moment', async () => {
    await seedRegistry(workers[0]!);
    for (let round = 0; round < 10; round++) {
      const hash = createHash('sha256').update(`race-${round}`).digest('hex');
      await issueCode(workers[0]!, hash);
      const [a, b] = await Promise.all(
        workers.map((w, i) => w.enroll(enrollInput(hash, `gw-${round}-${i}`, [meterRec(`meter-${round}-${i}`, `gw-${round}-${i}`)]))),
      );
      const outcomes = [a!, b!];
      expect(outcomes.filter((o) => o.ok), `round ${round}`).toHaveLength(1);
      expect(outcomes.find((o) => !o.ok)).toMatchObject({ reason: 'code_used' });
      const winner = outcomes.findIndex((o) => o.ok);
      expect(await workers[1]!.getEnrollmentCode(hash)).toMatchObject({ usedAtMs: NOW, usedBy: `gw-${round}-${winner}` });
      expect(await workers[0]!.getGateway(`gw-${round}-${1 - winner}`)).toBeUndefined();
      expect(await workers[0]!.getMeter(`meter-${round}-${1 - winner}`)).toBeUndefined();
    }
    // Two codes, one meter id: the primary key settles it, the loser is told who has it.
    const [c1, c2] = ['race-m1', 'race-m2'].map((s) => createHash('sha256').update(s).digest('hex')) as [string, string];
    await issueCode(workers[0]!, c1);
    await issueCode(workers[0]!, c2);
    const outcomes = await Promise.all([
      workers[0]!.enroll(enrollInput(c1, 'gw-p', [meterRec('shared-meter', 'gw-p')])),
      workers[1]!.enroll(enrollInput(c2, 'gw-q', [meterRec('shared-meter', 'gw-q')])),
    ]);
    const owner = (await workers[0]!.getMeter('shared-meter'))!.gateway;
    expect(outcomes.filter((o) => o.ok)).toHaveLength(1);
    expect(outcomes.find((o) => !o.ok)).toEqual({
      ok: false,
      reason: 'meter_taken',
      detail: expect.stringContaining(`meter shared-meter is already enrolled by gateway ${owner}`),
    });
  }, 60_000);

  /**
   * 5 meters over 2 markets, 40 readings each at irregular 1-6 minute steps with random energy,
   * in envelopes of 1 to 3 readings; the expected interval rows of each meter.
   */
  function energyWorkload(): { envs: VerifiedEnvelope[]; expected: Map<string, IntervalRow[]>; contextOf: (m: string) => MeterContext } {
    const rand = seededRandom(seed + 10);
    const gw = new EnvelopeFactory('gw-worker-a');
    const meters = ['e-0', 'e-1', 'e-2', 'e-3', 'e-4'];
    const contextOf = (m: string): MeterContext => ({ ...CONTEXT, market: meters.indexOf(m) < 3 ? 'm1' : 'm2' });
    const envs: VerifiedEnvelope[] = [];
    const expected = new Map<string, IntervalRow[]>();
    for (const [k, meter] of meters.entries()) {
      const points: Array<[number, number, number]> = [];
      let minute = k;
      let imp = 1_000 * k;
      let exp = 0;
      for (let i = 0; i < 40; i++) {
        const step = 1 + Math.floor(rand() * 6);
        minute += step;
        imp += Math.floor(rand() * 150 * step);
        if (k % 2 === 1) exp += Math.floor(rand() * 150 * step);
        points.push([minute, imp, exp]);
      }
      const rs = series(gw, meter, points);
      expected.set(meter, expectedIntervals(rs, contextOf(meter)));
      for (let i = 0; i < rs.length; ) {
        const n = 1 + Math.floor(rand() * 3);
        envs.push(verified(gw.sign(rs.slice(i, i + n)), 1_000 + envs.length, contextOf));
        i += n;
      }
    }
    return { envs, expected, contextOf };
  }

  it('adds interval energy exactly once per pair when two workers commit interleaved envelopes of the same meters', async () => {
    const { envs, expected } = energyWorkload();
    await register(workers[0]!, new EnvelopeFactory('gw-worker-a'));

    // The single-worker result, in order, on a schema of its own.
    const solo = await freshPostgresSchema(pgUrl!);
    const single = new PostgresLedger(solo.url);
    const soloRows = new Map<string, IntervalRow[]>();
    let soloMarkets: unknown;
    try {
      await single.migrate();
      await register(single, new EnvelopeFactory('gw-worker-a'));
      for (const env of envs) await single.commitEnvelopes([env]);
      for (const m of expected.keys()) soloRows.set(m, await single.intervalEnergy(m, 0, Number.MAX_SAFE_INTEGER));
      soloMarkets = await Promise.all(['m1', 'm2'].map((mk) => single.marketIntervals(mk, 0, Number.MAX_SAFE_INTEGER)));
    } finally {
      await single.close();
      await solo.drop();
    }
    for (const [m, rows] of expected) expect(soloRows.get(m), `meter ${m}`).toEqual(rows);

    // Interleaved: each worker gets every other envelope, shuffled into random batches, so
    // the meters' chains fill in from both sides at once with gaps in between.
    const rand = seededRandom(seed + 11);
    const mine = [envs.filter((_, i) => i % 2 === 0), envs.filter((_, i) => i % 2 === 1)];
    const [a, b] = await Promise.all([runWorker(workers[0]!, mine[0]!, rand, 3), runWorker(workers[1]!, mine[1]!, seededRandom(seed + 12), 3)]);
    const all = [...a.values(), ...b.values()];
    expect(all.filter((o) => o.status !== 'accepted'), `seed ${seed}`).toEqual([]);
    for (const m of expected.keys()) {
      expect(ranges(await workers[0]!.gaps(m)), `meter ${m}, seed ${seed}`).toEqual([]);
      expect(await workers[1]!.intervalEnergy(m, 0, Number.MAX_SAFE_INTEGER), `meter ${m}, seed ${seed}`).toEqual(soloRows.get(m));
    }
    expect(await Promise.all(['m1', 'm2'].map((mk) => workers[0]!.marketIntervals(mk, 0, Number.MAX_SAFE_INTEGER)))).toEqual(soloMarkets);

    // Both workers resending everything at once changes nothing.
    await Promise.all([runWorker(workers[0]!, envs, seededRandom(seed + 13), 2), runWorker(workers[1]!, envs, seededRandom(seed + 14), 2)]);
    for (const m of expected.keys()) {
      expect(await workers[0]!.intervalEnergy(m, 0, Number.MAX_SAFE_INTEGER), `meter ${m}, seed ${seed}`).toEqual(soloRows.get(m));
    }
  }, 60_000);
});

// ---- one batch decides like one envelope at a time ----------------------------------------
// Added with the set-based PostgreSQL commit (all stored neighbours read once per batch,
// every envelope planned in memory, one write per table): the batch must decide exactly as
// committing its envelopes one by one would, each envelope seeing what the ones before it
// in the batch store, and nothing of what they refuse.

describe.each(engines)('$name ledger, one batch against one envelope at a time', (engine) => {
  describe.skipIf(engine.skip)('commits a batch as its envelopes in order', () => {
    let opened: OpenedLedger[];
    let f: EnvelopeFactory;

    beforeEach(() => {
      opened = [];
      f = new EnvelopeFactory('gw-batch');
    });
    afterEach(async () => {
      for (const o of opened) await o.cleanup();
    });

    async function open(): Promise<Ledger> {
      const o = await engine.open();
      opened.push(o);
      await register(o.ledger, f);
      return o.ledger;
    }

    it('mixes accepted, duplicate and rejected envelopes in one batch, each seeing the ones before it', async () => {
      const ledger = await open();
      const [r1, r2, r3, r4] = series(f, 'm-1', [[0, 1000], [10, 1100], [20, 1250], [30, 1300]]) as [Reading, Reading, Reading, Reading];
      const [q1, q2] = series(f, 'm-2', [[0, 500], [10, 600]]) as [Reading, Reading];
      const old = verified(f.sign([r1]), 1000);
      expect(await ledger.commitEnvelopes([old])).toEqual([accepted(old, 1)]);

      const a = verified(f.sign([r2]), 2000); // extends the stored chain
      const b = verified(f.sign([r3]), 2001); // extends a, stored in this batch
      const forked = verified(f.sign([{ ...r3, powerW: r3.powerW + 1 }]), 2002); // seq 3 again, other content
      const broken = verified(f.sign([q1, { ...q2, prev: 'ef'.repeat(32) }]), 2003);
      const q1other = verified(f.sign([{ ...q1, powerW: q1.powerW + 1 }]), 2004); // broken's q1 was not stored
      const both = verified(f.sign([r3, r4]), 2005); // r3 is b's
      const outcomes = await ledger.commitEnvelopes([old, a, b, forked, broken, q1other, both, a]);
      expect(outcomes).toEqual([
        duplicate(old),
        accepted(a, 1),
        accepted(b, 1),
        { status: 'rejected', id: forked.id, reason: 'seq_regression', detail: expect.stringMatching(/seq 3/) },
        { status: 'rejected', id: broken.id, reason: 'broken_chain', detail: expect.any(String) },
        accepted(q1other, 1),
        accepted(both, 1, 1),
        duplicate(a),
      ]);
      expect(await ledger.counts()).toEqual({ envelopes: 5, readings: 5, rejections: 0 });
      expect((await ledger.readings('m-1')).map((r) => [r.seq, r.envelopeId, r.receivedAtMs])).toEqual([
        [1, old.id, 1000],
        [2, a.id, 2000],
        [3, b.id, 2001],
        [4, both.id, 2005],
      ]);
      expect((await ledger.readings('m-2')).map((r) => [r.seq, r.envelopeId])).toEqual([[1, q1other.id]]);
      expect((await ledger.envelopesWithMeter('m-1')).map((e) => [e.id, e.readingCount])).toEqual([
        [old.id, 1],
        [a.id, 1],
        [b.id, 1],
        [both.id, 2],
      ]);
      expect(await ledger.intervalEnergy('m-1', 0, Number.MAX_SAFE_INTEGER)).toEqual(expectedIntervals([r1, r2, r3, r4]));
      expect(await ledger.intervalEnergy('m-2', 0, Number.MAX_SAFE_INTEGER)).toEqual([]);
    });

    it('stores a shuffled batch with resends, regroupings, gap fills and a fork exactly as the same envelopes committed one at a time', async () => {
      const [batched, single] = [await open(), await open()];
      const rand = seededRandom(20_251_106);
      const meters = ['b-0', 'b-1', 'b-2', 'b-3'];
      const envs: VerifiedEnvelope[] = [];
      for (const [k, meter] of meters.entries()) {
        let minute = k;
        let imp = 1_000 * k;
        const points: Array<[number, number, number]> = [];
        for (let i = 0; i < 15; i++) {
          minute += 1 + Math.floor(rand() * 6);
          imp += Math.floor(rand() * 400);
          points.push([minute, imp, k % 2 === 1 ? imp : 0]);
        }
        const rs = series(f, meter, points);
        for (let i = 0; i < rs.length; ) {
          const n = 1 + Math.floor(rand() * 3);
          envs.push(verified(f.sign(rs.slice(i, i + n)), 1_000 + envs.length));
          i += n;
        }
        // The same readings regrouped across envelope boundaries, and a forked seq 8.
        envs.push(verified(f.sign(rs.slice(4, 9)), 1_000 + envs.length));
        envs.push(verified(f.sign([{ ...rs[7]!, powerW: rs[7]!.powerW + 1 }]), 1_000 + envs.length));
      }
      // Shuffled (gaps filled later, forks sometimes first), and every fifth envelope resent.
      const batch = shuffled(envs, rand);
      for (let i = 0; i < envs.length; i += 5) batch.splice(Math.floor(rand() * batch.length), 0, envs[i]!);

      const oneByOne: CommitOutcome[] = [];
      for (const env of batch) oneByOne.push(...(await single.commitEnvelopes([env])));
      expect(await batched.commitEnvelopes(batch)).toEqual(oneByOne);
      for (const status of ['accepted', 'duplicate', 'rejected']) expect(oneByOne.some((o) => o.status === status), status).toBe(true);

      expect(await batched.counts()).toEqual(await single.counts());
      for (const m of meters) {
        expect(await batched.readings(m), m).toEqual(await single.readings(m));
        expect(await batched.envelopesWithMeter(m), m).toEqual(await single.envelopesWithMeter(m));
        expect(await batched.intervalEnergy(m, 0, Number.MAX_SAFE_INTEGER), m).toEqual(await single.intervalEnergy(m, 0, Number.MAX_SAFE_INTEGER));
        expect(ranges(await batched.gaps(m)), m).toEqual(ranges(await single.gaps(m)));
      }
      expect(await batched.marketIntervals('m1', 0, Number.MAX_SAFE_INTEGER)).toEqual(await single.marketIntervals('m1', 0, Number.MAX_SAFE_INTEGER));
    });
  });
});

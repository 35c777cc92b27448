import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GENESIS_PREV, envelopeIdOf, gatewayId, readingHash, signedBytes, type Envelope, type Reading } from '../../protocol/index.ts';
import type { CommitOutcome, Ledger, VerifiedEnvelope } from '../../settlement/ledger/ledger.ts';
import { loadMigrations } from '../../settlement/ledger/migrations.ts';
import { openLedger } from '../../settlement/ledger/open.ts';
import { PostgresLedger } from '../../settlement/ledger/postgres.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { freshPostgresSchema, postgresUrl, requireOrSkip } from '../support/services.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * What every Ledger implementation promises, run against each engine: SQLite always,
 * PostgreSQL when it is reachable (see test/support/services.ts). PostgreSQL also gets the
 * multi-worker cases at the end: two pools on one database, like two settlement workers.
 */

interface OpenedLedger {
  ledger: Ledger;
  /** Another Ledger object on the same store (a restarted process). */
  reopen(): Promise<Ledger>;
  /** The payload bytes stored for a rejection, read behind the interface's back. */
  storedPayload(id: number): Promise<Buffer>;
  cleanup(): Promise<void>;
}

interface Engine {
  name: 'sqlite' | 'postgres';
  skip: boolean;
  open(): Promise<OpenedLedger>;
}

const pgUrl = await postgresUrl();
const skipPostgres = requireOrSkip('PostgreSQL ledger', !!pgUrl, `no PostgreSQL at ${process.env.GTX_TEST_DATABASE_URL ?? '127.0.0.1:5432'}`);

const engines: Engine[] = [
  {
    name: 'sqlite',
    skip: false,
    async open() {
      const dir = tempDir('gtx-ledger-');
      const sqlitePath = join(dir.path, 'ledger.sqlite');
      const others: Ledger[] = [];
      const ledger = await openLedger({ sqlitePath });
      return {
        ledger,
        async reopen() {
          const l = await openLedger({ sqlitePath });
          others.push(l);
          return l;
        },
        async storedPayload(id) {
          const db = new Database(sqlitePath, { readonly: true });
          try {
            return (db.prepare('SELECT payload FROM rejections WHERE id = ?').pluck().get(id) as Buffer);
          } finally {
            db.close();
          }
        },
        async cleanup() {
          for (const l of [ledger, ...others]) await l.close();
          dir.remove();
        },
      };
    },
  },
  {
    name: 'postgres',
    skip: skipPostgres,
    async open() {
      const schema = await freshPostgresSchema(pgUrl!);
      const others: Ledger[] = [];
      const ledger = await openLedger({ sqlitePath: '/nonexistent/unused.sqlite', databaseUrl: schema.url });
      return {
        ledger,
        async reopen() {
          const l = await openLedger({ sqlitePath: '/nonexistent/unused.sqlite', databaseUrl: schema.url });
          others.push(l);
          return l;
        },
        async storedPayload(id) {
          const c = new pg.Client({ connectionString: schema.url });
          await c.connect();
          try {
            return (await c.query<{ payload: Buffer }>('SELECT payload FROM rejections WHERE id = $1', [id])).rows[0]!.payload;
          } finally {
            await c.end();
          }
        },
        async cleanup() {
          for (const l of [ledger, ...others]) await l.close();
          await schema.drop();
        },
      };
    },
  },
];

/** As settlement/ingest/verify.ts builds it once signature, schema and clock have passed. */
function verified(env: Envelope, receivedAtMs = Date.now()): VerifiedEnvelope {
  return {
    id: envelopeIdOf(signedBytes(env)),
    gateway: env.gateway,
    raw: JSON.stringify(env),
    readings: env.readings.map((r) => ({ ...r, hash: readingHash(r) })),
    receivedAtMs,
  };
}

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
      expect(await ledger.getGateway('gw-contract')).toEqual({
        id: 'gw-contract',
        publicKeyPem: f.publicKeyPem,
        status: 'active',
        createdAtMs: 1_700_000_000_000,
      });
      expect(await ledger.getGateway('gw-nobody')).toBeUndefined();
      const other = new EnvelopeFactory('gw-contract');
      await ledger.putGateway({ id: gatewayId('gw-contract'), publicKeyPem: other.publicKeyPem, status: 'revoked', createdAtMs: 1_800_000_000_000 });
      // The first registration time stays.
      expect(await ledger.getGateway('gw-contract')).toEqual({
        id: 'gw-contract',
        publicKeyPem: other.publicKeyPem,
        status: 'revoked',
        createdAtMs: 1_700_000_000_000,
      });
      await ledger.putGateway({ id: gatewayId('gw-contract'), publicKeyPem: other.publicKeyPem, status: 'active', createdAtMs: 1 });
      expect((await ledger.getGateway('gw-contract'))?.status).toBe('active');
    });

    it('commits a chained envelope and returns every field, large integers as numbers', async () => {
      const r1 = f.nextReading('m-1', { importWh: 5_000_000_000_000, exportWh: 3_000_000_000, powerW: -4_200, voltageMilliV: 230_100, currentMilliA: 12_345, frequencyMilliHz: 50_010 });
      f.advance(r1);
      const r2 = f.nextReading('m-1', { importWh: Number.MAX_SAFE_INTEGER - 1000, exportWh: 3_000_000_001, voltageMilliV: 229_900 });
      f.advance(r2);
      const r3 = f.nextReading('m-1', { importWh: Number.MAX_SAFE_INTEGER - 1000, exportWh: 3_000_000_002, currentMilliA: Number.MAX_SAFE_INTEGER });
      f.advance(r3);
      const env = verified(f.sign([r1, r2, r3]), 1_764_064_800_123);
      expect(await ledger.commitEnvelopes([env])).toEqual([accepted(env, 3)]);

      const stored = await ledger.readings('m-1');
      expect(stored).toEqual(
        [r1, r2, r3].map((r) => ({ ...r, hash: readingHash(r), envelopeId: env.id, gateway: 'gw-contract', receivedAtMs: 1_764_064_800_123 })),
      );
      expect(typeof stored[0]!.importWh).toBe('number');
      expect(stored[2]!).not.toHaveProperty('voltageMilliV');
      expect(await ledger.envelopesWithMeter('m-1')).toEqual([
        { id: env.id, gateway: 'gw-contract', raw: env.raw, receivedAtMs: 1_764_064_800_123, readingCount: 3 },
      ]);

      const next = verified(f.next('m-1'));
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

    it('records rejections with the first 64 KiB of the payload, its full size and digest, newest first', async () => {
      const big = randomBytes(100 * 1024);
      await ledger.recordRejection({
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
      await ledger.recordRejection({
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
  });
});

/** Deterministic shuffles, so that a failing interleaving can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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
    const rand = prng(seed);
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
      runWorker(workers[0]!, envs, prng(seed + 1), 2),
      runWorker(workers[1]!, envs, prng(seed + 2), 2),
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
      const rs = [...x.readings, ...y.readings].map(({ hash: _hash, ...r }) => r);
      regrouped.push(verified(f.get(x.gateway)!.sign(rs, x.gateway), 5_000 + i));
    }
    const rest = envs.filter((_, i) => i % 10 !== 0 && i % 10 !== 5);
    const [a, b] = await Promise.all([
      runWorker(workers[0]!, envs, prng(seed + 3), 2),
      runWorker(workers[1]!, [...regrouped, ...rest], prng(seed + 4), 2),
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
});

import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OUTBOX_SCHEMA_VERSION, Outbox, type Sample } from '../../gateway/outbox.ts';
import { RETRY_FIRST_MS, RETRY_MAX_MS, retryDelayMs } from '../../gateway/publisher.ts';
import { gatewayId, generateGatewayKeyPair, loadPrivateKey, meterId, readingHash, type Envelope } from '../../protocol/index.ts';
import { tempDir } from '../support/tmp.ts';

const GW = gatewayId('gw-outbox');
const key = loadPrivateKey(generateGatewayKeyPair().privateKeyPem);
const T0 = Date.parse('2026-11-20T10:00:00.000Z');

function samples(meter: string, n: number, fromMs: number): Sample[] {
  return Array.from({ length: n }, (_, i) => ({
    meter: meterId(meter),
    tsMs: fromMs + i * 1000,
    values: { importWh: 1000 + i, exportWh: 0, powerW: 100 },
  }));
}

const seqsOf = (payload: string) => (JSON.parse(payload) as Envelope).readings.map((r) => `${r.meter}#${r.seq}`);

describe('gateway outbox', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanups.reverse()) c();
    cleanups.length = 0;
  });
  const open = (file: string) => {
    const ob = new Outbox(file);
    cleanups.push(() => ob.close());
    return ob;
  };
  const dir = () => {
    const d = tempDir('gtx-outbox-');
    cleanups.push(() => d.remove());
    return d.path;
  };

  it('migrates an outbox written before versioning, keeping entries, dead letters and heads', () => {
    const file = join(dir(), 'outbox.sqlite');
    // Build the old layout with the old code path: seal with today's Outbox would already migrate,
    // so write the version-1 tables by hand and fill them with real sealed envelopes.
    const scratch = new Outbox(':memory:');
    const a = scratch.seal(GW, key, samples('m1', 2, T0))!;
    const b = scratch.seal(GW, key, samples('m1', 2, T0 + 5000))!;
    const head = scratch.meterHeads()[0]!;
    scratch.close();
    const old = new Database(file);
    old.exec(`
      CREATE TABLE outbox (pos INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, created_at_ms INTEGER NOT NULL, readings INTEGER NOT NULL, payload TEXT NOT NULL);
      CREATE TABLE meter_heads (meter TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL);
      CREATE TABLE dead_letters (id TEXT PRIMARY KEY, payload TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, at_ms INTEGER NOT NULL);
    `);
    old.prepare('INSERT INTO dead_letters VALUES (?, ?, ?, ?, ?)').run(a.id, a.payload, 'broken_chain', 'prev does not match', T0);
    old.prepare('INSERT INTO outbox (id, created_at_ms, readings, payload) VALUES (?, ?, ?, ?)').run(b.id, T0, b.readings, b.payload);
    old.prepare('INSERT INTO meter_heads VALUES (?, ?, ?)').run('m1', head.seq, head.hash);
    expect(old.pragma('user_version', { simple: true })).toBe(0);
    old.close();

    const ob = open(file);
    expect(ob.depth()).toBe(1);
    expect(ob.deadLetters()).toBe(1);
    // The head's time is recovered from the envelope still in the outbox (seq 4 at T0 + 6 s).
    expect(ob.meterHeads()).toEqual([{ meter: 'm1', seq: 4, hash: head.hash, tsMs: T0 + 6000 }]);
    const [due] = ob.due(Date.now(), 10);
    expect(due).toMatchObject({ id: b.id, attempts: 0 });
    // A dead letter from before version 2 has no pos: listed and requeued all the same, after what is there.
    expect(ob.listDeadLetters()).toEqual([
      { id: a.id, pos: null, readings: 2, meters: [{ meter: 'm1', fromSeq: 1, toSeq: 2 }], reason: 'broken_chain', detail: 'prev does not match', atMs: T0 },
    ]);
    expect(ob.requeue()).toBe(1);
    expect(ob.due(Date.now(), 10).map((e) => e.id)).toEqual([b.id, a.id]);
    ob.close();

    const raw = new Database(file, { readonly: true });
    expect(raw.pragma('user_version', { simple: true })).toBe(OUTBOX_SCHEMA_VERSION);
    raw.close();
    // Opening it again is a no-op.
    expect(open(file).depth()).toBe(2);
  });

  it('refuses an outbox from a newer gateway instead of guessing', () => {
    const file = join(dir(), 'outbox.sqlite');
    const db = new Database(file);
    db.pragma(`user_version = ${OUTBOX_SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => new Outbox(file)).toThrow(/newer than this gateway knows/);
  });

  it('backs off 10 s, doubling, up to 30 min', () => {
    expect(RETRY_FIRST_MS).toBe(10_000);
    expect(RETRY_MAX_MS).toBe(30 * 60_000);
    expect([1, 2, 3, 4, 8, 9, 50].map((n) => retryDelayMs(n))).toEqual([10_000, 20_000, 40_000, 80_000, 1_280_000, 1_800_000, 1_800_000]);
  });

  it('offers the oldest eligible entries: a deferred one waits out its backoff, then goes before newer ones', () => {
    const ob = open(':memory:');
    const e = [1, 2, 3, 4].map((i) => ob.seal(GW, key, samples('m1', 1, T0 + i * 1000))!);
    const now = T0 + 60_000;
    expect(ob.defer(e[0]!.id, 'future_timestamp', 'ahead by 2 h', now, retryDelayMs)).toEqual({ attempts: 1, nextAttemptMs: now + 10_000 });
    expect(ob.defer(e[0]!.id, 'future_timestamp', 'ahead by 2 h', now, retryDelayMs)).toEqual({ attempts: 2, nextAttemptMs: now + 20_000 });
    expect(ob.defer('0'.repeat(64), 'commit_failed', 'x', now, retryDelayMs)).toBeUndefined();

    expect(ob.due(now, 10).map((x) => x.pos)).toEqual([e[1]!.pos, e[2]!.pos, e[3]!.pos]);
    // In flight entries are skipped, the limit counts only what is returned.
    expect(ob.due(now, 1, new Set([e[1]!.id])).map((x) => x.pos)).toEqual([e[2]!.pos]);
    // Due again: it comes first, in outbox order, and carries its attempt count.
    const later = ob.due(now + 20_000, 2);
    expect(later.map((x) => [x.pos, x.attempts])).toEqual([
      [e[0]!.pos, 2],
      [e[1]!.pos, 0],
    ]);
    // A next attempt far beyond the backoff cap was scheduled by a clock that went back: due now.
    expect(ob.due(now - 86_400_000, 1, new Set(), RETRY_MAX_MS).map((x) => x.pos)).toEqual([e[0]!.pos]);

    expect(ob.retries()).toEqual([{ reason: 'future_timestamp', envelopes: 1, maxAttempts: 2, nextAttemptMs: now + 20_000, lastDetail: 'ahead by 2 h' }]);
    expect(ob.acknowledge(e[0]!.id, now)).toBe(true);
    expect(ob.retries()).toEqual([]);
    expect(ob.getState<number>('last_ack_ms')).toBe(now);
  });

  it('requeues dead letters at their original places, all or by reason', () => {
    const ob = open(':memory:');
    const e = [0, 1, 2, 3, 4].map((i) => ob.seal(GW, key, samples(i % 2 ? 'm2' : 'm1', 2, T0 + i * 10_000))!);
    expect(ob.deadLetter(e[1]!.id, 'unknown_gateway', 'gateway gw-outbox is not registered', T0 + 1)).toBe(true);
    expect(ob.deadLetter(e[3]!.id, 'unknown_gateway', 'gateway gw-outbox is not registered', T0 + 2)).toBe(true);
    expect(ob.deadLetter(e[2]!.id, 'broken_chain', 'prev does not match', T0 + 3)).toBe(true);
    expect(ob.deadLetter(e[2]!.id, 'broken_chain', 'again', T0 + 4)).toBe(false);
    expect(ob.depth()).toBe(2);
    expect(ob.listDeadLetters().map((d) => [d.pos, d.reason, d.meters])).toEqual([
      [e[1]!.pos, 'unknown_gateway', [{ meter: 'm2', fromSeq: 1, toSeq: 2 }]],
      [e[2]!.pos, 'broken_chain', [{ meter: 'm1', fromSeq: 3, toSeq: 4 }]],
      [e[3]!.pos, 'unknown_gateway', [{ meter: 'm2', fromSeq: 3, toSeq: 4 }]],
    ]);

    expect(ob.requeue('unknown_gateway')).toBe(2);
    expect(ob.deadLetters()).toBe(1);
    expect(ob.due(Date.now(), 10).map((x) => x.pos)).toEqual([e[0]!.pos, e[1]!.pos, e[3]!.pos, e[4]!.pos]);
    expect(ob.requeue('unknown_gateway')).toBe(0);
    expect(ob.requeue()).toBe(1);
    expect(ob.due(Date.now(), 10).map((x) => seqsOf(x.payload).join(' '))).toEqual([
      'm1#1 m1#2',
      'm2#1 m2#2',
      'm1#3 m1#4',
      'm2#3 m2#4',
      'm1#5 m1#6',
    ]);
    // New entries still go after everything.
    const f = ob.seal(GW, key, samples('m1', 1, T0 + 100_000))!;
    expect(f.pos).toBeGreaterThan(e[4]!.pos);
  });

  it('adopts settlement chain heads by raising only, and reports unsent envelopes of the meter', () => {
    const ob = open(':memory:');
    ob.seal(GW, key, samples('m1', 3, T0));
    const m1 = ob.meterHeads().find((h) => h.meter === 'm1')!;
    const ledgerHash = 'a'.repeat(64);
    const adopted = ob.adoptChainHeads([
      { meter: 'm1', seq: 2, hash: 'b'.repeat(64) }, // behind the outbox: kept
      { meter: 'm2', seq: 41, hash: ledgerHash }, // new here: raised
    ]);
    expect(adopted).toEqual([
      { meter: 'm1', action: 'kept', localSeq: 3, ledgerSeq: 2, unsent: { envelopes: 1, fromSeq: 1, toSeq: 3 } },
      { meter: 'm2', action: 'raised', localSeq: null, ledgerSeq: 41, unsent: { envelopes: 0, fromSeq: null, toSeq: null } },
    ]);
    expect(ob.meterHeads()).toEqual([
      { meter: 'm1', seq: 3, hash: m1.hash, tsMs: T0 + 2000 },
      { meter: 'm2', seq: 41, hash: ledgerHash, tsMs: null },
    ]);
    // The chain continues from the adopted head.
    const next = ob.seal(GW, key, samples('m2', 1, T0 + 10_000))!;
    const r = (JSON.parse(next.payload) as Envelope).readings[0]!;
    expect([r.seq, r.prev]).toEqual([42, ledgerHash]);
    expect(ob.meterHeads().find((h) => h.meter === 'm2')).toEqual({ meter: 'm2', seq: 42, hash: readingHash(r), tsMs: T0 + 10_000 });
    // Raising m1 past the outbox moves it; its unsent envelope is reported.
    expect(ob.adoptChainHeads([{ meter: 'm1', seq: 9, hash: ledgerHash }])[0]).toMatchObject({ action: 'raised', localSeq: 3, unsent: { envelopes: 1 } });
    expect(ob.meterHeads().find((h) => h.meter === 'm1')).toMatchObject({ seq: 9, hash: ledgerHash, tsMs: T0 + 2000 });
  });
});

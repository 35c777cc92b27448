import Database from 'better-sqlite3';
import type { KeyObject } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  GENESIS_PREV,
  encodeEnvelope,
  envelopeIdOf,
  readingHash,
  signEnvelope,
  signedBytes,
  type EnvelopeId,
  type GatewayId,
  type MeterId,
  type Reading,
} from '../protocol/index.ts';
import type { DecodedReading } from '../devices/decoder.ts';

/** A decoded sample waiting to be sealed into an envelope. */
export interface Sample {
  meter: MeterId;
  tsMs: number;
  values: DecodedReading;
}

export interface OutboxEntry {
  pos: number;
  id: EnvelopeId;
  payload: string;
  readings: number;
  createdAtMs: number;
  /** Retryable refusals so far. */
  attempts: number;
}

export interface MeterHead {
  meter: string;
  seq: number;
  hash: string;
  /** Timestamp of the head reading; null when unknown (adopted from settlement, or an old outbox). */
  tsMs: number | null;
}

/** A meter's readings inside one envelope. */
export interface MeterSpan {
  meter: string;
  fromSeq: number;
  toSeq: number;
}

export interface DeadLetter {
  id: EnvelopeId;
  /** Its place in the outbox before it was refused; null for letters from before version 2. */
  pos: number | null;
  readings: number;
  meters: MeterSpan[];
  reason: string;
  detail: string;
  atMs: number;
}

/** Envelopes kept for another attempt after a retryable refusal, per reason. */
export interface RetryGroup {
  reason: string;
  envelopes: number;
  maxAttempts: number;
  nextAttemptMs: number;
  lastDetail: string;
}

/** What enrolling did to one meter's chain head (see adoptChainHeads). */
export interface HeadAdoption {
  meter: string;
  /** raised: continue from settlement's head; kept: the outbox is already at or past it. */
  action: 'raised' | 'kept';
  localSeq: number | null;
  ledgerSeq: number;
  /** Envelopes of this meter still in the outbox (sealed before the enrollment) and their seqs. */
  unsent: { envelopes: number; fromSeq: number | null; toSeq: number | null };
}

/** The outbox's schema version (PRAGMA user_version) after the migrations below. */
export const OUTBOX_SCHEMA_VERSION = 2;

type Db = Database.Database;

/**
 * Versioned with PRAGMA user_version. Version 1 is the layout outboxes had before versioning, so
 * an old file (user_version 0, tables present) goes through 1 as a no-op and on to 2.
 */
const MIGRATIONS: ReadonlyArray<(db: Db) => void> = [
  (db) =>
    db.exec(`
      CREATE TABLE IF NOT EXISTS outbox (
        pos INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        created_at_ms INTEGER NOT NULL,
        readings INTEGER NOT NULL,
        payload TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS meter_heads (meter TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS dead_letters (
        id TEXT PRIMARY KEY,
        payload TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        at_ms INTEGER NOT NULL
      );
    `),
  (db) => {
    // Retry state per envelope; next_attempt_ms 0 = never refused (or requeued): send when its turn comes.
    db.exec(`
      ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE outbox ADD COLUMN next_attempt_ms INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE outbox ADD COLUMN last_reason TEXT;
      ALTER TABLE outbox ADD COLUMN last_detail TEXT;
      CREATE INDEX outbox_due ON outbox (next_attempt_ms, pos);
      ALTER TABLE meter_heads ADD COLUMN ts_ms INTEGER;
      ALTER TABLE dead_letters ADD COLUMN pos INTEGER;
      ALTER TABLE dead_letters ADD COLUMN readings INTEGER;
      ALTER TABLE dead_letters ADD COLUMN created_at_ms INTEGER;
      CREATE TABLE gateway_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    `);
    // The clock check needs each head's time: recover it from envelopes still on disk.
    const want = new Map((db.prepare('SELECT meter, seq FROM meter_heads').all() as Array<{ meter: string; seq: number }>).map((h) => [h.meter, h.seq]));
    if (want.size === 0) return;
    const found = new Map<string, number>();
    for (const payload of db.prepare('SELECT payload FROM outbox UNION ALL SELECT payload FROM dead_letters').pluck().iterate() as Iterable<string>) {
      for (const r of readingsOf(payload)) if (want.get(r.meter) === r.seq) found.set(r.meter, Date.parse(r.ts));
    }
    const setTs = db.prepare('UPDATE meter_heads SET ts_ms = ? WHERE meter = ?');
    for (const [meter, ts] of found) setTs.run(ts, meter);
  },
];

function readingsOf(payload: string): Array<{ meter: string; seq: number; ts: string }> {
  try {
    const env = JSON.parse(payload) as { readings?: Array<{ meter: string; seq: number; ts: string }> };
    return Array.isArray(env.readings) ? env.readings : [];
  } catch {
    return [];
  }
}

function spansOf(payload: string): MeterSpan[] {
  const spans = new Map<string, MeterSpan>();
  for (const r of readingsOf(payload)) {
    const s = spans.get(r.meter);
    if (!s) spans.set(r.meter, { meter: r.meter, fromSeq: r.seq, toSeq: r.seq });
    else {
      s.fromSeq = Math.min(s.fromSeq, r.seq);
      s.toSeq = Math.max(s.toSeq, r.seq);
    }
  }
  return [...spans.values()];
}

function migrate(db: Db, file: string): void {
  const version = () => db.pragma('user_version', { simple: true }) as number;
  if (version() > MIGRATIONS.length) {
    throw new Error(`${file} has outbox schema version ${version()}, newer than this gateway knows (${MIGRATIONS.length}): run the newer gateway`);
  }
  while (version() < MIGRATIONS.length) {
    // IMMEDIATE: `gtx gateway status` may open the file while the gateway does; one migrates.
    db.transaction(() => {
      const v = version();
      if (v >= MIGRATIONS.length) return;
      MIGRATIONS[v]!(db);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}

interface DueRow {
  pos: number;
  id: string;
}

/**
 * The gateway's durable outbox (SQLite, WAL). Sealing assigns each meter's next seq and
 * chain link, signs, and stores the envelope in one transaction, so a crash never leaves a
 * gap or a fork in a meter's chain. Entries leave only when settlement acknowledges them, or
 * refuses them for good (dead letters, which an installer can requeue).
 */
export class Outbox {
  private readonly db: Db;
  private readonly s;

  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    migrate(this.db, path);
    this.s = {
      head: this.db.prepare('SELECT seq, hash FROM meter_heads WHERE meter = ?'),
      setHead: this.db.prepare(
        'INSERT INTO meter_heads (meter, seq, hash, ts_ms) VALUES (?, ?, ?, ?) ON CONFLICT (meter) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, ts_ms = excluded.ts_ms',
      ),
      // An adopted head keeps this gateway's own newest time: the clock check must not loosen.
      adoptHead: this.db.prepare(
        'INSERT INTO meter_heads (meter, seq, hash, ts_ms) VALUES (?, ?, ?, NULL) ON CONFLICT (meter) DO UPDATE SET seq = excluded.seq, hash = excluded.hash',
      ),
      insert: this.db.prepare('INSERT INTO outbox (id, created_at_ms, readings, payload) VALUES (?, ?, ?, ?)'),
      insertAt: this.db.prepare('INSERT OR IGNORE INTO outbox (pos, id, created_at_ms, readings, payload) VALUES (?, ?, ?, ?, ?)'),
      insertLast: this.db.prepare('INSERT OR IGNORE INTO outbox (id, created_at_ms, readings, payload) VALUES (?, ?, ?, ?)'),
      posTaken: this.db.prepare('SELECT 1 FROM outbox WHERE pos = ?').pluck(),
      // Two index range scans (outbox_due) instead of one filtered walk over every row's payload.
      dueFresh: this.db.prepare('SELECT pos, id FROM outbox WHERE next_attempt_ms = 0 ORDER BY pos LIMIT ?'),
      dueRetry: this.db.prepare(
        'SELECT pos, id FROM outbox WHERE next_attempt_ms > 0 AND (next_attempt_ms <= ? OR next_attempt_ms > ?) ORDER BY pos LIMIT ?',
      ),
      entry: this.db.prepare('SELECT payload, readings, created_at_ms, attempts FROM outbox WHERE pos = ?'),
      remove: this.db.prepare('DELETE FROM outbox WHERE id = ?'),
      get: this.db.prepare('SELECT pos, payload, readings, created_at_ms, attempts FROM outbox WHERE id = ?'),
      defer: this.db.prepare('UPDATE outbox SET attempts = ?, next_attempt_ms = ?, last_reason = ?, last_detail = ? WHERE id = ?'),
      depth: this.db.prepare('SELECT count(*) FROM outbox').pluck(),
      dead: this.db.prepare(
        'INSERT OR REPLACE INTO dead_letters (id, payload, reason, detail, at_ms, pos, readings, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      deadCount: this.db.prepare('SELECT count(*) FROM dead_letters').pluck(),
      deadList: this.db.prepare('SELECT id, pos, payload, readings, reason, detail, at_ms FROM dead_letters ORDER BY pos IS NULL, pos, at_ms LIMIT ?'),
      deadForRequeue: this.db.prepare(
        'SELECT id, pos, payload, readings, created_at_ms, at_ms FROM dead_letters WHERE ? IS NULL OR reason = ? ORDER BY pos IS NULL, pos, at_ms',
      ),
      undead: this.db.prepare('DELETE FROM dead_letters WHERE id = ?'),
      retries: this.db.prepare(
        `SELECT last_reason AS reason, count(*) AS envelopes, max(attempts) AS maxAttempts, min(next_attempt_ms) AS nextAttemptMs,
                (SELECT o2.last_detail FROM outbox o2 WHERE o2.last_reason = o.last_reason AND o2.attempts > 0 ORDER BY o2.pos DESC LIMIT 1) AS lastDetail
           FROM outbox o WHERE attempts > 0 GROUP BY last_reason ORDER BY nextAttemptMs`,
      ),
      heads: this.db.prepare('SELECT meter, seq, hash, ts_ms FROM meter_heads ORDER BY meter'),
      unsentOf: this.db.prepare(
        `SELECT count(DISTINCT o.pos) AS envelopes, min(json_extract(r.value, '$.seq')) AS fromSeq, max(json_extract(r.value, '$.seq')) AS toSeq
           FROM outbox o, json_each(o.payload, '$.readings') r WHERE json_extract(r.value, '$.meter') = ?`,
      ),
      getState: this.db.prepare('SELECT value FROM gateway_state WHERE key = ?').pluck(),
      setState: this.db.prepare('INSERT INTO gateway_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      clearState: this.db.prepare('DELETE FROM gateway_state WHERE key = ?'),
      syncNormal: this.db.prepare('PRAGMA synchronous = NORMAL'),
      syncFull: this.db.prepare('PRAGMA synchronous = FULL'),
    };
  }

  /** Signs the samples into one envelope and stores it; returns it, or null for no samples. */
  seal(gateway: GatewayId, key: KeyObject, samples: Sample[]): OutboxEntry | null {
    if (samples.length === 0) return null;
    return this.db.transaction((): OutboxEntry => {
      const heads = new Map<string, { seq: number; hash: string; tsMs: number }>();
      const readings: Reading[] = samples.map((s) => {
        const head = heads.get(s.meter) ?? (this.s.head.get(s.meter) as { seq: number; hash: string } | undefined);
        const r: Reading = {
          meter: s.meter,
          seq: (head?.seq ?? 0) + 1,
          ts: new Date(s.tsMs).toISOString(),
          importWh: s.values.importWh,
          exportWh: s.values.exportWh,
          powerW: s.values.powerW,
          prev: head?.hash ?? GENESIS_PREV,
        };
        if (s.values.voltageMilliV !== undefined) r.voltageMilliV = s.values.voltageMilliV;
        if (s.values.currentMilliA !== undefined) r.currentMilliA = s.values.currentMilliA;
        if (s.values.frequencyMilliHz !== undefined) r.frequencyMilliHz = s.values.frequencyMilliHz;
        heads.set(s.meter, { seq: r.seq, hash: readingHash(r), tsMs: s.tsMs });
        return r;
      });
      const env = signEnvelope({ v: 1, gateway, readings }, key);
      const id = envelopeIdOf(signedBytes(env));
      const payload = encodeEnvelope(env);
      const createdAtMs = Date.now();
      const pos = Number(this.s.insert.run(id, createdAtMs, readings.length, payload).lastInsertRowid);
      for (const [meter, h] of heads) this.s.setHead.run(meter, h.seq, h.hash, h.tsMs);
      return { pos, id, payload, readings: readings.length, createdAtMs, attempts: 0 };
    })();
  }

  /**
   * The oldest entries that may be sent now, in outbox order: not in `skip` (the in-flight
   * window) and not waiting out a retry backoff. Retried and requeued entries keep their place.
   * A next attempt further than `maxWaitMs` ahead was scheduled by a clock that has since gone
   * back: it is due now rather than in a year.
   */
  due(nowMs: number, limit: number, skip: { has(id: string): boolean; readonly size: number } = new Set(), maxWaitMs = Infinity): OutboxEntry[] {
    if (limit <= 0) return [];
    const want = limit + skip.size;
    const fresh = this.s.dueFresh.all(want) as DueRow[];
    const retry = this.s.dueRetry.all(nowMs, Number.isFinite(maxWaitMs) ? nowMs + maxWaitMs : Number.MAX_SAFE_INTEGER, want) as DueRow[];
    const rows = retry.length === 0 ? fresh : [...fresh, ...retry].sort((a, b) => a.pos - b.pos);
    const out: OutboxEntry[] = [];
    for (const r of rows) {
      if (out.length >= limit) break;
      if (skip.has(r.id)) continue;
      const e = this.s.entry.get(r.pos) as { payload: string; readings: number; created_at_ms: number; attempts: number } | undefined;
      if (!e) continue;
      out.push({ pos: r.pos, id: r.id as EnvelopeId, payload: e.payload, readings: e.readings, createdAtMs: e.created_at_ms, attempts: e.attempts });
    }
    return out;
  }

  /** Settlement committed it: forget it, and remember when settlement last answered. Returns false if it was already gone. */
  acknowledge(id: string, atMs = Date.now()): boolean {
    // Committed without an fsync (WAL, synchronous NORMAL): the next seal's fsync makes it
    // durable. A power cut before then only brings the envelope back, and settlement answers a
    // resent envelope with its ack again ('duplicate'); a sealed envelope is never at risk.
    this.s.syncNormal.run();
    try {
      return this.db.transaction(() => {
        this.s.setState.run('last_ack_ms', String(atMs));
        return this.s.remove.run(id).changes > 0;
      })();
    } finally {
      this.s.syncFull.run();
    }
  }

  /**
   * Settlement refused it for now (a retryable reason): keep it, and send it again no sooner
   * than `delayMs(attempts)` from `nowMs`. Returns the new attempt count and time, or undefined
   * if the entry is gone.
   */
  defer(id: string, reason: string, detail: string, nowMs: number, delayMs: (attempts: number) => number): { attempts: number; nextAttemptMs: number } | undefined {
    return this.db.transaction(() => {
      const row = this.s.get.get(id) as { attempts: number } | undefined;
      if (!row) return undefined;
      const attempts = row.attempts + 1;
      // At least 1: 0 means "never refused" to the due() queries.
      const nextAttemptMs = Math.max(1, nowMs + delayMs(attempts));
      this.s.defer.run(attempts, nextAttemptMs, reason, detail, id);
      return { attempts, nextAttemptMs };
    })();
  }

  /** Settlement refused it for good: keep it aside for an installer to inspect, stop resending. */
  deadLetter(id: string, reason: string, detail: string, atMs = Date.now()): boolean {
    return this.db.transaction(() => {
      const row = this.s.get.get(id) as { pos: number; payload: string; readings: number; created_at_ms: number } | undefined;
      if (row === undefined) return false;
      this.s.dead.run(id, row.payload, reason, detail, atMs, row.pos, row.readings, row.created_at_ms);
      this.s.remove.run(id);
      return true;
    })();
  }

  /**
   * Moves dead letters (all, or those refused for `reason`) back into the outbox at their old
   * places, so they go out in their original order; a running gateway's pump picks them up.
   */
  requeue(reason?: string): number {
    return this.db
      .transaction(() => {
        const rows = this.s.deadForRequeue.all(reason ?? null, reason ?? null) as Array<{
          id: string;
          pos: number | null;
          payload: string;
          readings: number | null;
          created_at_ms: number | null;
          at_ms: number;
        }>;
        let moved = 0;
        for (const r of rows) {
          const readings = r.readings ?? readingsOf(r.payload).length;
          const createdAt = r.created_at_ms ?? r.at_ms;
          // AUTOINCREMENT never hands out a pos twice, so the old place is free; letters from
          // before version 2 have none and go to the end.
          const res =
            r.pos !== null && !this.s.posTaken.get(r.pos)
              ? this.s.insertAt.run(r.pos, r.id, createdAt, readings, r.payload)
              : this.s.insertLast.run(r.id, createdAt, readings, r.payload);
          if (res.changes > 0) moved++;
          this.s.undead.run(r.id);
        }
        return moved;
      })
      .immediate();
  }

  /** Whether an envelope is still waiting (not acknowledged, not a dead letter). */
  has(id: string): boolean {
    return this.s.get.get(id) !== undefined;
  }

  depth(): number {
    return this.s.depth.get() as number;
  }

  deadLetters(): number {
    return this.s.deadCount.get() as number;
  }

  /** Dead letters in their original outbox order. */
  listDeadLetters(limit = 1000): DeadLetter[] {
    const rows = this.s.deadList.all(limit) as Array<{ id: string; pos: number | null; payload: string; readings: number | null; reason: string; detail: string; at_ms: number }>;
    return rows.map((r) => ({
      id: r.id as EnvelopeId,
      pos: r.pos,
      readings: r.readings ?? readingsOf(r.payload).length,
      meters: spansOf(r.payload),
      reason: r.reason,
      detail: r.detail,
      atMs: r.at_ms,
    }));
  }

  /** Envelopes waiting to be sent again after a retryable refusal, grouped by reason. */
  retries(): RetryGroup[] {
    return this.s.retries.all() as RetryGroup[];
  }

  meterHeads(): MeterHead[] {
    return (this.s.heads.all() as Array<{ meter: string; seq: number; hash: string; ts_ms: number | null }>).map((h) => ({
      meter: h.meter,
      seq: h.seq,
      hash: h.hash,
      tsMs: h.ts_ms,
    }));
  }

  /**
   * Continues each meter's chain from where settlement's ledger has it (a gateway replacing
   * another): a head is only ever raised, never lowered, so nothing this outbox sealed is forked.
   */
  adoptChainHeads(heads: ReadonlyArray<{ meter: string; seq: number; hash: string }>): HeadAdoption[] {
    return this.db
      .transaction(() =>
        heads.map((h): HeadAdoption => {
          const local = this.s.head.get(h.meter) as { seq: number; hash: string } | undefined;
          const unsent = this.s.unsentOf.get(h.meter) as HeadAdoption['unsent'];
          // Equal seq with another hash: this outbox's reading was never stored; the ledger's wins.
          const raise = !local || local.seq < h.seq || (local.seq === h.seq && local.hash !== h.hash);
          if (raise) this.s.adoptHead.run(h.meter, h.seq, h.hash);
          return { meter: h.meter, action: raise ? 'raised' : 'kept', localSeq: local?.seq ?? null, ledgerSeq: h.seq, unsent };
        }),
      )
      .immediate();
  }

  /**
   * Bytes the outbox's data takes: database pages in use (pages freed by acknowledged envelopes
   * are reused, so the file need not shrink for the outbox to have room again).
   */
  sizeBytes(): number {
    const pages = (this.db.pragma('page_count', { simple: true }) as number) - (this.db.pragma('freelist_count', { simple: true }) as number);
    return pages * (this.db.pragma('page_size', { simple: true }) as number);
  }

  /** Small facts the gateway keeps for `gtx gateway status` (JSON values). */
  getState<T>(key: string): T | undefined {
    const v = this.s.getState.get(key) as string | undefined;
    return v === undefined ? undefined : (JSON.parse(v) as T);
  }

  setState(key: string, value: unknown): void {
    if (value === undefined) this.s.clearState.run(key);
    else this.s.setState.run(key, JSON.stringify(value));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

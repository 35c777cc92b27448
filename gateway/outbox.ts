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
}

/**
 * The gateway's durable outbox (SQLite, WAL). Sealing assigns each meter's next seq and
 * chain link, signs, and stores the envelope in one transaction, so a crash never leaves a
 * gap or a fork in a meter's chain. Entries leave only when settlement acknowledges them.
 */
export class Outbox {
  private readonly db: Database.Database;
  private readonly s;

  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(`
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
    `);
    this.s = {
      head: this.db.prepare('SELECT seq, hash FROM meter_heads WHERE meter = ?'),
      setHead: this.db.prepare(
        'INSERT INTO meter_heads (meter, seq, hash) VALUES (?, ?, ?) ON CONFLICT (meter) DO UPDATE SET seq = excluded.seq, hash = excluded.hash',
      ),
      insert: this.db.prepare('INSERT INTO outbox (id, created_at_ms, readings, payload) VALUES (?, ?, ?, ?)'),
      pending: this.db.prepare('SELECT pos, id, payload, readings, created_at_ms FROM outbox WHERE pos > ? ORDER BY pos LIMIT ?'),
      remove: this.db.prepare('DELETE FROM outbox WHERE id = ?'),
      get: this.db.prepare('SELECT payload FROM outbox WHERE id = ?').pluck(),
      depth: this.db.prepare('SELECT count(*) FROM outbox').pluck(),
      dead: this.db.prepare('INSERT OR REPLACE INTO dead_letters (id, payload, reason, detail, at_ms) VALUES (?, ?, ?, ?, ?)'),
      deadCount: this.db.prepare('SELECT count(*) FROM dead_letters').pluck(),
      heads: this.db.prepare('SELECT meter, seq FROM meter_heads ORDER BY meter'),
    };
  }

  /** Signs the samples into one envelope and stores it; returns it, or null for no samples. */
  seal(gateway: GatewayId, key: KeyObject, samples: Sample[]): OutboxEntry | null {
    if (samples.length === 0) return null;
    return this.db.transaction((): OutboxEntry => {
      const heads = new Map<string, { seq: number; hash: string }>();
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
        heads.set(s.meter, { seq: r.seq, hash: readingHash(r) });
        return r;
      });
      const env = signEnvelope({ v: 1, gateway, readings }, key);
      const id = envelopeIdOf(signedBytes(env));
      const payload = encodeEnvelope(env);
      const createdAtMs = Date.now();
      const pos = Number(this.s.insert.run(id, createdAtMs, readings.length, payload).lastInsertRowid);
      for (const [meter, h] of heads) this.s.setHead.run(meter, h.seq, h.hash);
      return { pos, id, payload, readings: readings.length, createdAtMs };
    })();
  }

  /** Entries after `afterPos`, oldest first. */
  pending(limit: number, afterPos = 0): OutboxEntry[] {
    return (this.s.pending.all(afterPos, limit) as Array<{ pos: number; id: string; payload: string; readings: number; created_at_ms: number }>).map(
      (r) => ({ pos: r.pos, id: r.id as EnvelopeId, payload: r.payload, readings: r.readings, createdAtMs: r.created_at_ms }),
    );
  }

  /** Settlement committed it: forget it. Returns false if it was already gone. */
  acknowledge(id: string): boolean {
    return this.s.remove.run(id).changes > 0;
  }

  /** Settlement refused it for good: keep it aside for an installer to inspect, stop resending. */
  deadLetter(id: string, reason: string, detail: string): boolean {
    return this.db.transaction(() => {
      const payload = this.s.get.get(id) as string | undefined;
      if (payload === undefined) return false;
      this.s.dead.run(id, payload, reason, detail, Date.now());
      this.s.remove.run(id);
      return true;
    })();
  }

  depth(): number {
    return this.s.depth.get() as number;
  }

  deadLetters(): number {
    return this.s.deadCount.get() as number;
  }

  meterHeads(): Array<{ meter: string; seq: number }> {
    return this.s.heads.all() as Array<{ meter: string; seq: number }>;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

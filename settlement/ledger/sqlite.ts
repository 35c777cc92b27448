import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { EnvelopeId, GatewayId, MeterId } from '../../protocol/index.ts';
import { decideReading } from '../ingest/chain.ts';
import { loadMigrations } from './migrations.ts';
import type {
  CommitOutcome,
  GatewayRecord,
  Ledger,
  LedgerCounts,
  RejectionRecord,
  StoredEnvelope,
  StoredReading,
  StoredRejection,
  VerifiedEnvelope,
} from './ledger.ts';

const MAX_STORED_REJECTED_PAYLOAD = 64 * 1024;

interface ReadingRow {
  meter: string;
  seq: number;
  envelope_id: string;
  gateway: string;
  ts_ms: number;
  import_wh: number;
  export_wh: number;
  power_w: number;
  voltage_mv: number | null;
  current_ma: number | null;
  frequency_mhz: number | null;
  prev: string;
  hash: string;
  received_at_ms: number;
}

/** Thrown inside a savepoint to roll back one envelope without aborting the batch. */
class EnvelopeRejected extends Error {
  constructor(readonly outcome: Extract<CommitOutcome, { status: 'rejected' }>) {
    super(outcome.detail);
  }
}

export class SqliteLedger implements Ledger {
  readonly engine = 'sqlite' as const;
  private readonly db: Database.Database;

  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode is durable against process crashes; FULL adds power-loss safety.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
  }

  async migrate(): Promise<void> {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)');
    const applied = new Set(
      (this.db.prepare('SELECT version FROM schema_migrations').all() as Array<{ version: number }>).map((r) => r.version),
    );
    for (const m of loadMigrations('sqlite')) {
      if (applied.has(m.version)) continue;
      this.db.transaction(() => {
        this.db.exec(m.sql);
        this.db.prepare('INSERT INTO schema_migrations VALUES (?, ?, ?)').run(m.version, m.name, Date.now());
      })();
    }
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  async putGateway(rec: GatewayRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO gateways (id, public_key_pem, status, created_at_ms) VALUES (?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET public_key_pem = excluded.public_key_pem, status = excluded.status`,
      )
      .run(rec.id, rec.publicKeyPem, rec.status, rec.createdAtMs);
  }

  async getGateway(id: string): Promise<GatewayRecord | undefined> {
    const row = this.db.prepare('SELECT * FROM gateways WHERE id = ?').get(id) as
      | { id: string; public_key_pem: string; status: 'active' | 'revoked'; created_at_ms: number }
      | undefined;
    if (!row) return undefined;
    return { id: row.id as GatewayId, publicKeyPem: row.public_key_pem, status: row.status, createdAtMs: row.created_at_ms };
  }

  private stmts?: ReturnType<SqliteLedger['prepare']>;

  private prepare() {
    return {
      envelopeExists: this.db.prepare('SELECT 1 FROM envelopes WHERE id = ?').pluck(),
      readingAt: this.db.prepare('SELECT hash, prev FROM readings WHERE meter = ? AND seq = ?'),
      insertEnvelope: this.db.prepare(
        'INSERT INTO envelopes (id, gateway, received_at_ms, reading_count, raw) VALUES (?, ?, ?, ?, ?)',
      ),
      insertReading: this.db.prepare(
        `INSERT INTO readings (meter, seq, envelope_id, gateway, ts_ms, import_wh, export_wh, power_w,
           voltage_mv, current_ma, frequency_mhz, prev, hash, received_at_ms)
         VALUES (@meter, @seq, @envelope_id, @gateway, @ts_ms, @import_wh, @export_wh, @power_w,
           @voltage_mv, @current_ma, @frequency_mhz, @prev, @hash, @received_at_ms)`,
      ),
    };
  }

  async commitEnvelopes(batch: VerifiedEnvelope[]): Promise<CommitOutcome[]> {
    const s = (this.stmts ??= this.prepare());
    const commitOne = this.db.transaction((env: VerifiedEnvelope): CommitOutcome => {
      if (s.envelopeExists.get(env.id)) return { status: 'duplicate', id: env.id, readings: env.readings.length };
      // The envelope row goes first so readings can reference it; a rejection rolls it back.
      s.insertEnvelope.run(env.id, env.gateway, env.receivedAtMs, env.readings.length, env.raw);
      let inserted = 0;
      let duplicates = 0;
      for (const r of env.readings) {
        const at = (seq: number) => s.readingAt.get(r.meter, seq) as { hash: string; prev: string } | undefined;
        const d = decideReading(r, { same: at(r.seq), before: at(r.seq - 1), after: at(r.seq + 1) });
        if (d.kind === 'reject') throw new EnvelopeRejected({ status: 'rejected', id: env.id, reason: d.reason, detail: d.detail });
        if (d.kind === 'duplicate') {
          duplicates++;
          continue;
        }
        s.insertReading.run({
          meter: r.meter,
          seq: r.seq,
          envelope_id: env.id,
          gateway: env.gateway,
          ts_ms: Date.parse(r.ts),
          import_wh: r.importWh,
          export_wh: r.exportWh,
          power_w: r.powerW,
          voltage_mv: r.voltageMilliV ?? null,
          current_ma: r.currentMilliA ?? null,
          frequency_mhz: r.frequencyMilliHz ?? null,
          prev: r.prev,
          hash: r.hash,
          received_at_ms: env.receivedAtMs,
        });
        inserted++;
      }
      if (inserted === 0) throw new EnvelopeDuplicate(env.id, env.readings.length);
      return { status: 'accepted', id: env.id, inserted, duplicates };
    });
    const all = this.db.transaction((envs: VerifiedEnvelope[]) =>
      envs.map((env): CommitOutcome => {
        try {
          // Nested transaction = SAVEPOINT: a rejected envelope rolls back alone.
          return commitOne(env);
        } catch (e) {
          if (e instanceof EnvelopeRejected) return e.outcome;
          if (e instanceof EnvelopeDuplicate) return { status: 'duplicate', id: e.id, readings: e.readings };
          throw e;
        }
      }),
    );
    return all(batch);
  }

  async recordRejection(r: RejectionRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO rejections (received_at_ms, topic, gateway, envelope_id, reason, detail, payload, payload_bytes, payload_sha256)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        r.receivedAtMs,
        r.topic,
        r.gateway,
        r.envelopeId,
        r.reason,
        r.detail,
        r.payload.subarray(0, MAX_STORED_REJECTED_PAYLOAD),
        r.payload.length,
        createHash('sha256').update(r.payload).digest('hex'),
      );
  }

  async counts(): Promise<LedgerCounts> {
    const one = (sql: string) => this.db.prepare(sql).pluck().get() as number;
    return {
      envelopes: one('SELECT count(*) FROM envelopes'),
      readings: one('SELECT count(*) FROM readings'),
      rejections: one('SELECT count(*) FROM rejections'),
    };
  }

  async meters(): Promise<Array<{ meter: MeterId; readings: number; lastSeq: number }>> {
    return (
      this.db.prepare('SELECT meter, count(*) AS n, max(seq) AS last FROM readings GROUP BY meter ORDER BY meter').all() as Array<{
        meter: string;
        n: number;
        last: number;
      }>
    ).map((r) => ({ meter: r.meter as MeterId, readings: r.n, lastSeq: r.last }));
  }

  async readings(meter: string): Promise<StoredReading[]> {
    const rows = this.db.prepare('SELECT * FROM readings WHERE meter = ? ORDER BY seq').all(meter) as ReadingRow[];
    return rows.map(toStoredReading);
  }

  async envelopesWithMeter(meter: string): Promise<StoredEnvelope[]> {
    const rows = this.db
      .prepare(
        `SELECT e.id, e.gateway, e.raw, e.received_at_ms, e.reading_count FROM envelopes e
         WHERE e.id IN (SELECT DISTINCT envelope_id FROM readings WHERE meter = ?) ORDER BY e.received_at_ms, e.id`,
      )
      .all(meter) as Array<{ id: string; gateway: string; raw: string; received_at_ms: number; reading_count: number }>;
    return rows.map((r) => ({
      id: r.id as EnvelopeId,
      gateway: r.gateway as GatewayId,
      raw: r.raw,
      receivedAtMs: r.received_at_ms,
      readingCount: r.reading_count,
    }));
  }

  async rejections(limit = 100): Promise<StoredRejection[]> {
    const rows = this.db
      .prepare(
        'SELECT id, received_at_ms, topic, gateway, envelope_id, reason, detail, payload_bytes, payload_sha256 FROM rejections ORDER BY id DESC LIMIT ?',
      )
      .all(limit) as Array<{
      id: number;
      received_at_ms: number;
      topic: string;
      gateway: string | null;
      envelope_id: string | null;
      reason: StoredRejection['reason'];
      detail: string;
      payload_bytes: number;
      payload_sha256: string;
    }>;
    return rows.map((r) => ({
      id: r.id,
      receivedAtMs: r.received_at_ms,
      topic: r.topic,
      gateway: r.gateway,
      envelopeId: r.envelope_id as EnvelopeId | null,
      reason: r.reason,
      detail: r.detail,
      payloadBytes: r.payload_bytes,
      payloadSha256: r.payload_sha256,
    }));
  }

  private readonly heldLocks = new Set<string>();

  /**
   * One SQLite file serves one settlement process, so there is no other worker to exclude:
   * the lock is always free except while a run under the same key is still going here.
   */
  async withAdvisoryLock<T>(key: string, fn: () => Promise<T>): Promise<T | undefined> {
    if (this.heldLocks.has(key)) return undefined;
    this.heldLocks.add(key);
    try {
      return await fn();
    } finally {
      this.heldLocks.delete(key);
    }
  }
}

/** Every reading of the envelope was already stored (e.g. the same readings re-batched). */
class EnvelopeDuplicate extends Error {
  constructor(
    readonly id: EnvelopeId,
    readonly readings: number,
  ) {
    super('duplicate');
  }
}

function toStoredReading(r: ReadingRow): StoredReading {
  const out: StoredReading = {
    meter: r.meter as MeterId,
    seq: r.seq,
    ts: new Date(r.ts_ms).toISOString(),
    importWh: r.import_wh,
    exportWh: r.export_wh,
    powerW: r.power_w,
    prev: r.prev,
    hash: r.hash,
    envelopeId: r.envelope_id as EnvelopeId,
    gateway: r.gateway as GatewayId,
    receivedAtMs: r.received_at_ms,
  };
  if (r.voltage_mv !== null) out.voltageMilliV = r.voltage_mv;
  if (r.current_ma !== null) out.currentMilliA = r.current_ma;
  if (r.frequency_mhz !== null) out.frequencyMilliHz = r.frequency_mhz;
  return out;
}

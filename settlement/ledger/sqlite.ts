import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { EnvelopeId, GatewayId, MeterId } from '../../protocol/index.ts';
import type { ChainReading } from '../chain/rules.ts';
import { SharedLedgerQueries } from './shared-queries.ts';
import { EnergySums, chainReadingOf, outcomeOf, planEnvelope, type ChainView } from './plan.ts';
import { rejectionTotal } from './rejection-store.ts';
import type {
  Account,
  EnrollmentCodeRecord,
  EnrollOutcome,
  Market,
  MeterRecord,
  RegistryStore,
} from '../registry/registry.ts';
import { runMigrations } from './migrations.ts';
import { sqliteDb, type LedgerDb } from '../store/database.ts';
import { toGateway, toMarket, toAccount, toCode, toMeter, refuseCode, refuseGateway, refuseMeters, toStoredReading, toGapRecord, type GapTableRow, type GatewayRow, type MarketRow, type AccountRow, type CodeRow, type MeterRow, type ReadingRow } from './rows.ts';
import type {
  CommitOptions,
  CommitOutcome,
  GapRow,
  GatewayRecord,
  GatewayStatus,
  IntervalRow,
  Ledger,
  LedgerCounts,
  MarketIntervalRow,
  RejectionRecord,
  StoredEnvelope,
  StoredReading,
  StoredRejection,
  VerifiedEnvelope,
} from './ledger.ts';
import { commitOptions } from './ledger.ts';

const MAX_STORED_REJECTED_PAYLOAD = 64 * 1024;

export class SqliteLedger extends SharedLedgerQueries implements Ledger {
  readonly engine = 'sqlite' as const;
  private readonly sqlite: Database.Database;
  readonly db: LedgerDb;

  /**
   * `walAutocheckpointPages`: after a commit that leaves the WAL longer than this, the
   * committing connection checkpoints it (SQLite's default is 1000 pages, ~4 MiB).
   */
  constructor(path: string, opts: { walAutocheckpointPages?: number } = {}) {
    super();
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.sqlite = new Database(path);
    this.sqlite.pragma('journal_mode = WAL');
    // NORMAL in WAL mode is durable against process crashes; FULL adds power-loss safety.
    this.sqlite.pragma('synchronous = FULL');
    this.sqlite.pragma('foreign_keys = ON');
    this.sqlite.pragma('busy_timeout = 5000');
    if (opts.walAutocheckpointPages !== undefined) this.sqlite.pragma(`wal_autocheckpoint = ${opts.walAutocheckpointPages}`);
    this.db = sqliteDb(this.sqlite);
  }

  async migrate(): Promise<void> {
    const db = this.sqlite;
    await runMigrations({
      engine: 'sqlite',
      async query<T>(sql: string, params: unknown[] = []) {
        const st = db.prepare(sql);
        if (st.reader) return st.all(...params) as T[];
        st.run(...params);
        return [];
      },
      async exec(sql) {
        db.exec(sql);
      },
      async transaction(fn) {
        db.exec('BEGIN IMMEDIATE');
        try {
          await fn();
          db.exec('COMMIT');
        } catch (e) {
          if (db.inTransaction) db.exec('ROLLBACK');
          throw e;
        }
      },
      async columns(table) {
        return (db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).map((c) => c.name);
      },
    });
  }

  async close(): Promise<void> {
    if (this.sqlite.open) this.sqlite.close();
  }

  /** Replaces the record except its first registration time; absent optional fields become null. */
  async putGateway(rec: GatewayRecord): Promise<void> {
    this.sqlite
      .prepare(
        `INSERT INTO gateways (id, public_key_pem, status, created_at_ms, mqtt_secret_hash, revoked_at_ms) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET public_key_pem = excluded.public_key_pem, status = excluded.status,
           mqtt_secret_hash = excluded.mqtt_secret_hash, revoked_at_ms = excluded.revoked_at_ms`,
      )
      .run(rec.id, rec.publicKeyPem, rec.status, rec.createdAtMs, rec.mqttSecretHash ?? null, rec.revokedAtMs ?? null);
  }

  async getGateway(id: string): Promise<GatewayRecord | undefined> {
    const row = this.sqlite.prepare('SELECT * FROM gateways WHERE id = ?').get(id) as GatewayRow | undefined;
    return row && toGateway(row);
  }

  /**
   * Revoking stamps `atMs` (a gateway revoked again keeps its first stamp); any other status
   * clears the stamp. False when the gateway is unknown.
   */
  async setGatewayStatus(id: string, status: GatewayStatus, atMs: number): Promise<boolean> {
    const res = this.sqlite
      .prepare(
        `UPDATE gateways SET status = @status, revoked_at_ms = CASE
           WHEN @status <> 'revoked' THEN NULL
           WHEN status = 'revoked' AND revoked_at_ms IS NOT NULL THEN revoked_at_ms
           ELSE @atMs END
         WHERE id = @id`,
      )
      .run({ id, status, atMs });
    return res.changes > 0;
  }

  // ---- registry -------------------------------------------------------------------------

  /** Creates or renames/re-zones a market; its creation time is the first put's. */
  async putMarket(m: Market): Promise<void> {
    this.sqlite
      .prepare(
        `INSERT INTO markets (id, name, time_zone, interval_minutes, created_at_ms) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, time_zone = excluded.time_zone, interval_minutes = excluded.interval_minutes`,
      )
      .run(m.id, m.name, m.timeZone, m.intervalMinutes, Date.now());
  }

  async getMarket(id: string): Promise<Market | undefined> {
    const row = this.sqlite.prepare('SELECT * FROM markets WHERE id = ?').get(id) as MarketRow | undefined;
    return row && toMarket(row);
  }

  async listMarkets(): Promise<Market[]> {
    return (this.sqlite.prepare('SELECT * FROM markets ORDER BY id').all() as MarketRow[]).map(toMarket);
  }

  async putAccount(a: Account): Promise<void> {
    this.sqlite
      .prepare(
        `INSERT INTO accounts (id, name, created_at_ms) VALUES (?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name`,
      )
      .run(a.id, a.name, a.createdAtMs);
  }

  async getAccount(id: string): Promise<Account | undefined> {
    const row = this.sqlite.prepare('SELECT * FROM accounts WHERE id = ?').get(id) as AccountRow | undefined;
    return row && toAccount(row);
  }

  async putEnrollmentCode(c: EnrollmentCodeRecord): Promise<void> {
    this.sqlite
      .prepare(
        `INSERT INTO enrollment_codes (code_hash, market, owner, created_at_ms, expires_at_ms, used_at_ms, used_by)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (code_hash) DO UPDATE SET market = excluded.market, owner = excluded.owner, created_at_ms = excluded.created_at_ms,
           expires_at_ms = excluded.expires_at_ms, used_at_ms = excluded.used_at_ms, used_by = excluded.used_by`,
      )
      .run(c.codeHash, c.market, c.owner, c.createdAtMs, c.expiresAtMs, c.usedAtMs, c.usedBy);
  }

  async getEnrollmentCode(codeHash: string): Promise<EnrollmentCodeRecord | undefined> {
    const row = this.sqlite.prepare('SELECT * FROM enrollment_codes WHERE code_hash = ?').get(codeHash) as CodeRow | undefined;
    return row && toCode(row);
  }

  /**
   * One transaction, checked in this order: the code exists, is unused and unexpired at
   * `nowMs`; the gateway id is new; no meter id is enrolled. Then the code is marked used and
   * the gateway (active) and its meters are stored. A refusal writes nothing. better-sqlite3
   * runs the whole transaction synchronously, so no other enrollment can interleave.
   */
  async enroll(input: Parameters<RegistryStore['enroll']>[0]): Promise<EnrollOutcome> {
    const run = this.sqlite.transaction((): EnrollOutcome => {
      const code = this.sqlite.prepare('SELECT * FROM enrollment_codes WHERE code_hash = ?').get(input.codeHash) as CodeRow | undefined;
      const codeProblem = refuseCode(code && toCode(code), input.nowMs);
      if (codeProblem) return codeProblem;
      const gw = this.sqlite.prepare('SELECT * FROM gateways WHERE id = ?').get(input.gateway) as GatewayRow | undefined;
      if (gw) return refuseGateway(toGateway(gw));
      const ids = input.meters.map((m): string => m.id);
      const taken = this.sqlite
        // A meter of a revoked gateway may move to its replacement; any other owner keeps it.
        .prepare(
          `SELECT m.id, m.gateway FROM meters m JOIN gateways g ON g.id = m.gateway
           WHERE m.id IN (SELECT value FROM json_each(?)) AND g.status <> 'revoked' ORDER BY m.id`,
        )
        .all(JSON.stringify(ids)) as Array<{ id: string; gateway: string }>;
      const meterProblem = refuseMeters(ids, taken);
      if (meterProblem) return meterProblem;

      this.sqlite.prepare('UPDATE enrollment_codes SET used_at_ms = ?, used_by = ? WHERE code_hash = ?').run(input.nowMs, input.gateway, input.codeHash);
      this.sqlite
        .prepare(
          `INSERT INTO gateways (id, public_key_pem, status, created_at_ms, mqtt_secret_hash, revoked_at_ms)
           VALUES (?, ?, 'active', ?, ?, NULL)`,
        )
        .run(input.gateway, input.publicKeyPem, input.nowMs, input.mqttSecretHash);
      const insertMeter = this.sqlite.prepare(
        `INSERT INTO meters (id, gateway, model, role, rated_power_w, energy_source, market, owner, created_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET gateway = excluded.gateway, model = excluded.model, role = excluded.role,
           rated_power_w = excluded.rated_power_w, energy_source = excluded.energy_source, market = excluded.market,
           owner = excluded.owner`,
      );
      for (const m of input.meters) {
        insertMeter.run(m.id, input.gateway, m.model, m.role, m.ratedPowerW, m.energySource, m.market, m.owner, m.createdAtMs);
      }
      return { ok: true };
    });
    return run();
  }

  async getMeter(id: string): Promise<MeterRecord | undefined> {
    const row = this.sqlite.prepare('SELECT * FROM meters WHERE id = ?').get(id) as MeterRow | undefined;
    return row && toMeter(row);
  }

  async listMeters(filter: { gateway?: string; market?: string } = {}): Promise<MeterRecord[]> {
    const rows = this.sqlite
      .prepare(
        `SELECT * FROM meters WHERE (@gateway IS NULL OR gateway = @gateway) AND (@market IS NULL OR market = @market) ORDER BY id`,
      )
      .all({ gateway: filter.gateway ?? null, market: filter.market ?? null }) as MeterRow[];
    return rows.map(toMeter);
  }

  private stmts?: ReturnType<SqliteLedger['prepare']>;

  private prepare() {
    const cols = 'seq, hash, prev, ts_ms, import_wh, export_wh';
    return {
      readingAt: this.sqlite.prepare(`SELECT ${cols} FROM readings WHERE meter = ? AND seq = ?`),
      below: this.sqlite.prepare(`SELECT ${cols} FROM readings WHERE meter = ? AND seq < ? ORDER BY seq DESC LIMIT 1`),
      above: this.sqlite.prepare(`SELECT ${cols} FROM readings WHERE meter = ? AND seq > ? ORDER BY seq LIMIT 1`),
      head: this.sqlite.prepare(`SELECT ${cols} FROM readings WHERE meter = ? ORDER BY seq DESC LIMIT 1`),
      gapAt: this.sqlite.prepare('SELECT * FROM meter_gaps WHERE meter = ? AND from_seq = ?'),
      putGap: this.sqlite.prepare(
        `INSERT OR REPLACE INTO meter_gaps (meter, from_seq, to_seq, opened_at_ms, estimated_at_ms, est_market, est_interval_ms, est_time_zone)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      closeGap: this.sqlite.prepare('DELETE FROM meter_gaps WHERE meter = ? AND from_seq = ?'),
      addIntervalEnergy: this.sqlite.prepare(
        `INSERT INTO interval_energy (meter, start_ms, market, import_wh, export_wh, est_import_wh, est_export_wh) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (meter, start_ms) DO UPDATE SET import_wh = interval_energy.import_wh + excluded.import_wh,
           export_wh = interval_energy.export_wh + excluded.export_wh, est_import_wh = interval_energy.est_import_wh + excluded.est_import_wh,
           est_export_wh = interval_energy.est_export_wh + excluded.est_export_wh, market = excluded.market`,
      ),
      insertEnvelope: this.sqlite.prepare('INSERT INTO envelopes (id, gateway, received_at_ms, reading_count, signed, sig) VALUES (?, ?, ?, ?, ?, ?)'),
      insertReading: this.sqlite.prepare(
        `INSERT INTO readings (meter, seq, envelope_ref, gateway, ts_ms, import_wh, export_wh, power_w,
           voltage_mv, current_ma, frequency_mhz, prev, hash, received_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
    };
  }

  /**
   * Each meter's highest stored reading. One SQLite file belongs to one settlement process, so
   * after the first lookup the usual next reading of a meter (seq above the head) is decided
   * from memory: nothing is stored above the head, and the head is its nearest neighbour below.
   */
  private readonly heads = new Map<string, ChainHead>();

  private headOf(meter: string): ChainHead {
    let h = this.heads.get(meter);
    if (!h) {
      const row = this.stmts!.head.get(meter) as ReadingRowLite | undefined;
      h = row ? { seq: row.seq, reading: toChainReading(row) } : { seq: 0 };
      this.heads.set(meter, h);
    }
    return h;
  }

  /** What is stored, read inside the commit's transaction (so it includes the batch so far). */
  private readonly view: ChainView = {
    at: (meter, seq) => {
      const h = this.headOf(meter);
      if (seq > h.seq) return undefined;
      if (seq === h.seq) return h.reading;
      return rowToChain(this.stmts!.readingAt.get(meter, seq));
    },
    below: (meter, seq) => {
      const h = this.headOf(meter);
      if (seq > h.seq) return h.reading;
      return rowToChain(this.stmts!.below.get(meter, seq));
    },
    above: (meter, seq) => {
      if (seq >= this.headOf(meter).seq) return undefined;
      return rowToChain(this.stmts!.above.get(meter, seq));
    },
    gap: (meter, fromSeq) => {
      const row = this.stmts!.gapAt.get(meter, fromSeq) as GapTableRow | undefined;
      return row && toGapRecord(row);
    },
  };

  /**
   * One transaction for the batch. Each envelope is planned against what is stored (its
   * predecessors in the batch included, since they are written before it is planned) and
   * written only when accepted, so a refused envelope leaves nothing behind without needing a
   * savepoint. Interval energy is summed over the batch and upserted once per row.
   */
  async commitEnvelopes(batch: VerifiedEnvelope[], options?: CommitOptions): Promise<CommitOutcome[]> {
    const opts = commitOptions(options);
    const s = (this.stmts ??= this.prepare());
    const run = this.sqlite.transaction((envs: VerifiedEnvelope[]): CommitOutcome[] => {
      const energy = new EnergySums();
      const outcomes = envs.map((env): CommitOutcome => {
        const plan = planEnvelope(env, this.view, opts);
        if (plan.status !== 'accepted') return outcomeOf(env, plan);
        const ref = s.insertEnvelope.run(env.id, env.gateway, env.receivedAtMs, env.readings.length, env.signed, Buffer.from(env.sig, 'base64')).lastInsertRowid;
        for (const { reading: r, tsMs } of plan.fresh) {
          s.insertReading.run(
            r.meter, r.seq, ref, env.gateway, tsMs, r.importWh, r.exportWh, r.powerW,
            r.voltageMilliV ?? null, r.currentMilliA ?? null, r.frequencyMilliHz ?? null, r.prev, r.hash, env.receivedAtMs,
          );
          const h = this.headOf(r.meter);
          if (r.seq > h.seq) this.heads.set(r.meter, { seq: r.seq, reading: chainReadingOf(r, tsMs) });
        }
        for (const op of plan.gaps) {
          if (op.kind === 'close') s.closeGap.run(op.meter, op.fromSeq);
          else {
            const g = op.gap;
            const split = g.estimate?.split;
            s.putGap.run(op.meter, g.fromSeq, g.toSeq, g.openedAtMs, g.estimate?.atMs ?? null, split?.market ?? null, split?.intervalMs ?? null, split?.timeZone ?? null);
          }
        }
        energy.add(plan.energy);
        return outcomeOf(env, plan);
      });
      for (const e of energy.rows()) s.addIntervalEnergy.run(e.meter, e.startMs, e.market, e.importWh, e.exportWh, e.estImportWh, e.estExportWh);
      return outcomes;
    });
    try {
      // IMMEDIATE: take the write lock up front (waiting busy_timeout for it) instead of failing
      // at once when a read transaction cannot be upgraded.
      return run.immediate(batch);
    } catch (e) {
      // Rolled back: heads moved inside the transaction are no longer true.
      this.heads.clear();
      throw e;
    }
  }

  async counts(): Promise<LedgerCounts> {
    const one = (sql: string) => this.sqlite.prepare(sql).pluck().get() as number;
    return {
      envelopes: one('SELECT count(*) FROM envelopes'),
      readings: one('SELECT count(*) FROM readings'),
      rejections: await rejectionTotal(this.db),
    };
  }

  async meters(): Promise<Array<{ meter: MeterId; readings: number; lastSeq: number }>> {
    return (
      this.sqlite.prepare('SELECT meter, count(*) AS n, max(seq) AS last FROM readings GROUP BY meter ORDER BY meter').all() as Array<{
        meter: string;
        n: number;
        last: number;
      }>
    ).map((r) => ({ meter: r.meter as MeterId, readings: r.n, lastSeq: r.last }));
  }

  async readings(meter: string): Promise<StoredReading[]> {
    const rows = this.sqlite
      .prepare('SELECT r.*, e.id AS envelope_id FROM readings r JOIN envelopes e ON e.ref = r.envelope_ref WHERE r.meter = ? ORDER BY r.seq')
      .all(meter) as ReadingRow[];
    return rows.map(toStoredReading);
  }

  async envelopesWithMeter(meter: string): Promise<StoredEnvelope[]> {
    const rows = this.sqlite
      .prepare(
        `SELECT e.id, e.gateway, e.signed, e.sig, e.received_at_ms, e.reading_count FROM envelopes e
         WHERE e.ref IN (SELECT envelope_ref FROM readings WHERE meter = ?) ORDER BY e.received_at_ms, e.id`,
      )
      .all(meter) as Array<{ id: string; gateway: string; signed: string; sig: Buffer; received_at_ms: number; reading_count: number }>;
    return rows.map((r) => ({
      id: r.id as EnvelopeId,
      gateway: r.gateway as GatewayId,
      signed: r.signed,
      sig: r.sig,
      receivedAtMs: r.received_at_ms,
      readingCount: r.reading_count,
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

interface ReadingRowLite {
  seq: number;
  hash: string;
  prev: string;
  ts_ms: number;
  import_wh: number;
  export_wh: number;
}

interface ChainHead {
  /** 0 when the meter has no stored reading. */
  seq: number;
  reading?: ChainReading;
}

const toChainReading = (row: ReadingRowLite): ChainReading => ({
  seq: row.seq,
  hash: row.hash,
  prev: row.prev,
  tsMs: row.ts_ms,
  importWh: row.import_wh,
  exportWh: row.export_wh,
});

const rowToChain = (row: unknown): ChainReading | undefined => (row ? toChainReading(row as ReadingRowLite) : undefined);

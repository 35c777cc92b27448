import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ChainReading } from '../chain/rules.ts';
import { SharedLedgerQueries } from './shared-queries.ts';
import { EnergySums, outcomeOf, planEnvelope, type ChainView } from './plan.ts';
import { runMigrations } from './migrations.ts';
import { sqliteDb, type LedgerDb } from '../store/database.ts';
import { toGapRecord, type GapTableRow } from './rows.ts';
import type { CommitOptions, CommitOutcome, Ledger, VerifiedEnvelope } from './ledger.ts';
import { commitOptions } from './ledger.ts';


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
    // First: switching a new file to WAL needs a lock that another process opening the same
    // ledger (a second `gtx settlement run`, a CLI command) may hold for a moment.
    this.sqlite.pragma('busy_timeout = 5000');
    this.sqlite.pragma('journal_mode = WAL');
    // NORMAL in WAL mode is durable against process crashes; FULL adds power-loss safety.
    this.sqlite.pragma('synchronous = FULL');
    this.sqlite.pragma('foreign_keys = ON');
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
        for (const { reading: r, tsMs, chain } of plan.fresh) {
          s.insertReading.run(
            r.meter, r.seq, ref, env.gateway, tsMs, r.importWh, r.exportWh, r.powerW,
            r.voltageMilliV ?? null, r.currentMilliA ?? null, r.frequencyMilliHz ?? null, r.prev, r.hash, env.receivedAtMs,
          );
          const h = this.headOf(r.meter);
          if (r.seq > h.seq) this.heads.set(r.meter, { seq: r.seq, reading: chain });
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

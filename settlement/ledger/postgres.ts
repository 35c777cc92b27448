import pg from 'pg';
import { runMigrations } from './migrations.ts';
import { postgresDb, type LedgerDb } from '../store/database.ts';
import { EnergySums, MemoryChainView, outcomeOf, planEnvelope, type FreshReading } from './plan.ts';
import { SharedLedgerQueries } from './shared-queries.ts';
import { lockKey } from './pg-locks.ts';
import { toGapRecord } from './rows.ts';
import type { CommitOptions, CommitOutcome, Ledger, VerifiedEnvelope } from './ledger.ts';
import { commitOptions } from './ledger.ts';

/**
 * The ledger on PostgreSQL, for several settlement workers sharing one database. Same
 * contract as SqliteLedger (test/settlement/ledger-contract.test.ts runs against both).
 *
 * Concurrency: a batch commit first takes a transaction-scoped advisory lock per meter it
 * touches, in one global order (so two workers never deadlock on them), and holds them to
 * COMMIT. While a worker holds a meter's lock no other worker can add a reading of that
 * meter, so what it read of the meter's stored readings (seq-1, seq, seq+1 of each reading of
 * the batch, in one SELECT) stays true until its own readings are visible to everyone. Row
 * locks alone cannot do this: a gap has no row to lock. Every envelope is then decided in
 * memory (ledger/plan.ts), in batch order, each seeing what the envelopes before it will
 * store; a resent envelope is recognised as a duplicate by its readings, all already stored.
 * The accepted envelopes and their new readings are written in one statement, the interval
 * energy in one more; refused and duplicate envelopes write nothing. The reading insert
 * still uses ON CONFLICT DO NOTHING, and a lost race (fewer rows inserted than decided, or a
 * deadlock/serialisation/unique-violation error) reruns the whole batch transaction (up to
 * MAX_TRANSACTION_ATTEMPTS times), where it turns into a 'duplicate' outcome instead of an
 * exception.
 *
 * Interval energy is added in the same transaction as the readings, under the same meter
 * locks: a meter's interval rows are only ever touched by the transaction holding its lock,
 * so the read-decide-add sequence cannot count a pair twice or miss one. A batch's energy is
 * summed per (meter, interval) first, so that one upsert never touches a row twice.
 *
 * The batch statements are named (prepared once per pooled connection, planned by the
 * server from then on); a connection's search_path, hence its schema, is fixed by the
 * connection string, so a name never spans two schemas.
 *
 * The registry and the read queries are shared with SQLite (shared-queries.ts); this file is the
 * PostgreSQL readings store: the batch commit, migrations on this engine, the job lock.
 */

const INT8_OID = 20;
/** deadlock_detected, serialization_failure, unique_violation: rerun the transaction. */
const RETRYABLE_SQLSTATES = new Set(['40P01', '40001', '23505']);
const MAX_TRANSACTION_ATTEMPTS = 5;

/** BIGINT columns hold Wh, ms instants and seqs, all safe integers: read them as numbers. */
function parseInt8(s: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new RangeError(`BIGINT ${s} is outside the safe integer range`);
  return n;
}

/** Fewer rows inserted than decided: another transaction got there first. Rerun the batch. */
class LostRace extends Error {
  readonly code = '40001';
}

function isRetryable(e: unknown): boolean {
  if (e instanceof LostRace) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && RETRYABLE_SQLSTATES.has(code);
}

export interface PostgresLedgerOptions {
  /** Connections in this worker's pool (default 10). */
  maxConnections?: number;
}

export class PostgresLedger extends SharedLedgerQueries implements Ledger {
  readonly engine = 'postgres' as const;
  readonly db: LedgerDb;
  private readonly pool: pg.Pool;
  private closed = false;

  constructor(connectionString: string, opts: PostgresLedgerOptions = {}) {
    super();
    const types = new pg.TypeOverrides();
    types.setTypeParser(INT8_OID, parseInt8);
    this.pool = new pg.Pool({
      connectionString,
      types,
      max: opts.maxConnections ?? 10,
      connectionTimeoutMillis: 10_000,
    });
    // An idle pooled connection that dies (say, a server restart) is dropped by the pool;
    // without a listener its 'error' event would end the process. The next query reports it.
    this.pool.on('error', () => undefined);
    this.db = postgresDb(this.pool);
  }

  async migrate(): Promise<void> {
    const c = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await runMigrations({
        engine: 'postgres',
        async query<T>(sql: string, params: unknown[] = []) {
          let n = 0;
          return (await c.query(sql.replace(/\?/g, () => `$${++n}`), params)).rows as T[];
        },
        async exec(sql) {
          await c.query(sql);
        },
        async transaction(fn) {
          await c.query('BEGIN');
          try {
            // Two processes migrating at once: the second waits here, then finds the version applied.
            await c.query(`SELECT pg_advisory_xact_lock(${lockKey("'migrate'")})`);
            await fn();
            await c.query('COMMIT');
          } catch (e) {
            await c.query('ROLLBACK').catch((re: Error) => (broken = re));
            throw e;
          }
        },
        async columns(table) {
          const { rows } = await c.query<{ column_name: string }>(
            'SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1',
            [table],
          );
          return rows.map((r) => r.column_name);
        },
      });
    } finally {
      c.release(broken);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  async commitEnvelopes(batch: VerifiedEnvelope[], options?: CommitOptions): Promise<CommitOutcome[]> {
    const opts = commitOptions(options);
    if (batch.length === 0) return [];
    const meters = [...new Set(batch.flatMap((env) => env.readings.map((r): string => r.meter)))];
    const { wantMeters, wantLo, wantHi } = neighbourRanges(batch);
    return this.transaction(async (c) => {
      // Every meter of the batch, in ascending key order, held until COMMIT or ROLLBACK.
      await c.query({ name: 'gtx-lock-meters', text: LOCK_METERS, values: [meters] });
      // What the ledger holds around every reading of the batch (with the gaps that start at
      // those readings), in one round trip. The meter locks keep it current until COMMIT.
      const { rows } = await c.query<NeighbourRow>({ name: 'gtx-neighbours', text: SELECT_NEIGHBOURS, values: [wantMeters, wantLo, wantHi] });
      const view = new MemoryChainView();
      for (const row of rows) {
        const reading = { seq: row.seq, hash: row.hash, prev: row.prev, tsMs: row.ts_ms, importWh: row.import_wh, exportWh: row.export_wh };
        view.put(row.meter, reading, row.gap_to === null ? undefined : toGapRecord({ ...row, from_seq: row.seq, to_seq: row.gap_to, opened_at_ms: row.gap_opened_at_ms! }));
      }

      // Each envelope is planned in batch order and sees what the envelopes before it will
      // store, exactly as SqliteLedger sees its own inserts. Refused and all-duplicate
      // envelopes are left out of the writes below: nothing of them is stored.
      const outcomes: CommitOutcome[] = [];
      const stored: Array<{ env: VerifiedEnvelope; fresh: FreshReading[] }> = [];
      const storedIds = new Set<string>();
      const energy = new EnergySums();
      let freshCount = 0;
      for (const env of batch) {
        const plan = planEnvelope(env, view, opts);
        outcomes.push(outcomeOf(env, plan));
        if (plan.status !== 'accepted') continue;
        // The readings are tied to their envelope row by id in INSERT_ENVELOPES_AND_READINGS.
        // An id is the hash of the signed bytes, so a second envelope with an accepted id has
        // the same readings and was planned a duplicate above; anything else is a bug upstream.
        if (storedIds.has(env.id)) throw new Error(`envelope ${env.id} accepted twice in one batch with different readings`);
        storedIds.add(env.id);
        view.apply(plan);
        energy.add(plan.energy);
        stored.push({ env, fresh: plan.fresh });
        freshCount += plan.fresh.length;
      }
      if (stored.length === 0) return outcomes;

      const fresh = stored.flatMap((s) => s.fresh.map((f) => ({ id: s.env.id, r: f.reading, tsMs: f.tsMs })));
      const res = await c.query({
        name: 'gtx-insert-envelopes-readings',
        text: INSERT_ENVELOPES_AND_READINGS,
        values: [
          stored.map((s) => s.env.id),
          stored.map((s) => s.env.gateway),
          stored.map((s) => s.env.receivedAtMs),
          stored.map((s) => s.env.readings.length),
          stored.map((s) => s.env.signed),
          stored.map((s) => Buffer.from(s.env.sig, 'base64')),
          fresh.map((f) => f.id),
          fresh.map((f) => f.r.meter),
          fresh.map((f) => f.r.seq),
          fresh.map((f) => f.tsMs),
          fresh.map((f) => f.r.importWh),
          fresh.map((f) => f.r.exportWh),
          fresh.map((f) => f.r.powerW),
          fresh.map((f) => f.r.voltageMilliV ?? null),
          fresh.map((f) => f.r.currentMilliA ?? null),
          fresh.map((f) => f.r.frequencyMilliHz ?? null),
          fresh.map((f) => f.r.prev),
          fresh.map((f) => f.r.hash),
        ],
      });
      if (res.rowCount !== freshCount) {
        throw new LostRace(`${freshCount - (res.rowCount ?? 0)} reading(s) of the batch were stored concurrently`);
      }
      // Gaps: each touched gap's final state (a fill closes one and may reopen the same key).
      const touched = view.touchedGaps();
      if (touched.length > 0) {
        const closed = touched.filter((t) => t.gap === null);
        const open = touched.flatMap((t) => (t.gap ? [{ meter: t.meter, g: t.gap }] : []));
        if (closed.length > 0) {
          await c.query({ name: 'gtx-close-gaps', text: CLOSE_GAPS, values: [closed.map((t) => t.meter), closed.map((t) => t.fromSeq)] });
        }
        if (open.length > 0) {
          await c.query({
            name: 'gtx-put-gaps',
            text: PUT_GAPS,
            values: [
              open.map((o) => o.meter),
              open.map((o) => o.g.fromSeq),
              open.map((o) => o.g.toSeq),
              open.map((o) => o.g.openedAtMs),
              open.map((o) => o.g.estimate?.atMs ?? null),
              open.map((o) => o.g.estimate?.split?.market ?? null),
              open.map((o) => o.g.estimate?.split?.intervalMs ?? null),
              open.map((o) => o.g.estimate?.split?.timeZone ?? null),
            ],
          });
        }
      }
      const sums = energy.rows();
      if (sums.length > 0) {
        await c.query({
          name: 'gtx-add-interval-energy',
          text: ADD_INTERVAL_ENERGY,
          values: [
            sums.map((e) => e.meter),
            sums.map((e) => e.startMs),
            sums.map((e) => e.market),
            sums.map((e) => e.importWh),
            sums.map((e) => e.exportWh),
            sums.map((e) => e.estImportWh),
            sums.map((e) => e.estExportWh),
          ],
        });
      }
      return outcomes;
    });
  }

  /**
   * A session advisory lock on a connection held for the duration of `fn`: every worker on
   * this database schema competes for the same lock. If the process dies, the server drops
   * the connection and with it the lock.
   */
  async withAdvisoryLock<T>(key: string, fn: () => Promise<T>): Promise<T | undefined> {
    const c = await this.pool.connect();
    let acquired: boolean;
    try {
      const { rows } = await c.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${lockKey("'job/' || $1")}) AS ok`, [key]);
      acquired = rows[0]?.ok === true;
    } catch (e) {
      c.release(e as Error);
      throw e;
    }
    if (!acquired) {
      c.release();
      return undefined;
    }
    try {
      return await fn();
    } finally {
      try {
        await c.query(`SELECT pg_advisory_unlock(${lockKey("'job/' || $1")})`, [key]);
        c.release();
      } catch (e) {
        // Destroying the connection is what releases the lock now.
        c.release(e as Error);
      }
    }
  }

  /** BEGIN … COMMIT on one pooled connection; reruns `fn` after a lost race (see the class doc). */
  private async transaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const c = await this.pool.connect();
      let broken: Error | undefined;
      try {
        await c.query('BEGIN');
        const out = await fn(c);
        await c.query('COMMIT');
        return out;
      } catch (e) {
        try {
          await c.query('ROLLBACK');
        } catch (rollbackError) {
          broken = rollbackError as Error;
        }
        if (attempt < MAX_TRANSACTION_ATTEMPTS && isRetryable(e)) continue;
        throw e;
      } finally {
        c.release(broken);
      }
    }
  }
}

// The statements of a batch commit, prepared once per pooled connection (named statements).
// Each connection's search_path is fixed when it connects, so a name always means one schema.

/** Advisory locks on the meters of $1, taken in ascending key order (see the class doc). */
const LOCK_METERS = `SELECT count(pg_advisory_xact_lock(k)) FROM
  (SELECT DISTINCT ${lockKey("'meter/' || m")} AS k FROM unnest($1::text[]) AS m ORDER BY k) AS keys`;

interface NeighbourRow {
  meter: string;
  seq: number;
  hash: string;
  prev: string;
  ts_ms: number;
  import_wh: number;
  export_wh: number;
  /** The gap that starts at this reading, if one does. */
  gap_to: number | null;
  gap_opened_at_ms: number | null;
  estimated_at_ms: number | null;
  est_market: string | null;
  est_interval_ms: number | null;
  est_time_zone: string | null;
}

/**
 * For each (meter $1[i], lo $2[i], hi $3[i]): the stored readings of the meter with seq in
 * [lo, hi], the nearest one below lo and the nearest one above hi, each with the gap that
 * starts at it. That is what the chain rules and the gap bookkeeping of every reading of the
 * batch in [lo, hi] need (ledger/plan.ts). Each part is a primary-key index scan; OFFSET 0
 * keeps the range subquery from being flattened into a join, so that the plan stays an index
 * nested loop whatever the table's size when the statement was first planned (a generic plan
 * made while the table was small is otherwise a hash join over a sequential scan of all
 * readings, kept until the next ANALYZE).
 */
const NEIGHBOUR_COLUMNS = 'meter, seq, hash, prev, ts_ms, import_wh, export_wh';
const SELECT_NEIGHBOURS = `SELECT n.meter, n.seq, n.hash, n.prev, n.ts_ms, n.import_wh, n.export_wh,
    g.to_seq AS gap_to, g.opened_at_ms AS gap_opened_at_ms, g.estimated_at_ms, g.est_market, g.est_interval_ms, g.est_time_zone
  FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS want(meter, lo, hi)
  CROSS JOIN LATERAL (
    (SELECT ${NEIGHBOUR_COLUMNS} FROM readings WHERE meter = want.meter AND seq BETWEEN want.lo AND want.hi OFFSET 0)
    UNION ALL
    (SELECT ${NEIGHBOUR_COLUMNS} FROM readings WHERE meter = want.meter AND seq < want.lo ORDER BY seq DESC LIMIT 1)
    UNION ALL
    (SELECT ${NEIGHBOUR_COLUMNS} FROM readings WHERE meter = want.meter AND seq > want.hi ORDER BY seq LIMIT 1)
  ) AS n
  LEFT JOIN meter_gaps g ON g.meter = n.meter AND g.from_seq = n.seq`;

/**
 * The seq ranges whose neighbourhoods the plans of a batch need: one per meter when its
 * readings in the batch are close together (the usual run of new readings, where the scans
 * find only the stored head below), otherwise one per reading, so that a batch mixing old and
 * new seqs of a meter never scans the readings in between.
 */
function neighbourRanges(batch: VerifiedEnvelope[]): { wantMeters: string[]; wantLo: number[]; wantHi: number[] } {
  const perMeter = new Map<string, number[]>();
  for (const env of batch) {
    for (const r of env.readings) {
      let seqs = perMeter.get(r.meter);
      if (!seqs) perMeter.set(r.meter, (seqs = []));
      seqs.push(r.seq);
    }
  }
  const wantMeters: string[] = [];
  const wantLo: number[] = [];
  const wantHi: number[] = [];
  for (const [meter, seqs] of perMeter) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const seq of seqs) {
      if (seq < lo) lo = seq;
      if (seq > hi) hi = seq;
    }
    if (hi - lo <= 2 * seqs.length + 8) {
      wantMeters.push(meter);
      wantLo.push(lo);
      wantHi.push(hi);
      continue;
    }
    for (const seq of new Set(seqs)) {
      wantMeters.push(meter);
      wantLo.push(seq);
      wantHi.push(seq);
    }
  }
  return { wantMeters, wantLo, wantHi };
}

/**
 * The accepted envelopes ($1-$6, one element each) and their fresh readings ($7-$18, one
 * element each; $7 is the reading's envelope id) in one statement: each reading gets the ref,
 * gateway and arrival time of the envelope row inserted for its id. The ids are distinct
 * (commitEnvelopes checks), so the join finds exactly one row per reading. The row count is
 * that of the readings inserted.
 *
 * The arrays are unnested in the select list (a ProjectSet: one row at a time, in lockstep; the
 * arrays are always of one length), not with unnest(a, b, …) in FROM. The FROM form is ROWS
 * FROM (unnest(a), unnest(b), …), which copies every array into a tuplestore of its own before
 * the first row: for a batch of 200 16-reading envelopes, 12 tuplestores of 3,200 rows plus a
 * second copy of every signed payload, megabytes of backend memory per statement. The bench
 * showed no throughput difference between the two on our machine (docs/benchmarks.md, "The
 * PostgreSQL insert statement"); the select-list form is kept because it holds nothing.
 */
const INSERT_ENVELOPES_AND_READINGS = `WITH env AS (
    INSERT INTO envelopes (id, gateway, received_at_ms, reading_count, signed, sig)
    SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::bigint[]), unnest($4::integer[]), unnest($5::text[]), unnest($6::bytea[])
    RETURNING ref, id, gateway, received_at_ms
  )
  INSERT INTO readings (meter, seq, envelope_ref, gateway, ts_ms, import_wh, export_wh, power_w,
    voltage_mv, current_ma, frequency_mhz, prev, hash, received_at_ms)
  SELECT r.meter, r.seq, env.ref, env.gateway, r.ts_ms, r.import_wh, r.export_wh, r.power_w,
    r.voltage_mv, r.current_ma, r.frequency_mhz, r.prev, r.hash, env.received_at_ms
  FROM (SELECT unnest($7::text[]) AS envelope_id, unnest($8::text[]) AS meter, unnest($9::bigint[]) AS seq,
          unnest($10::bigint[]) AS ts_ms, unnest($11::bigint[]) AS import_wh, unnest($12::bigint[]) AS export_wh,
          unnest($13::bigint[]) AS power_w, unnest($14::bigint[]) AS voltage_mv, unnest($15::bigint[]) AS current_ma,
          unnest($16::bigint[]) AS frequency_mhz, unnest($17::text[]) AS prev, unnest($18::text[]) AS hash) AS r
  JOIN env ON env.id = r.envelope_id
  ON CONFLICT (meter, seq) DO NOTHING`;

/** Adds energy to (meter, start) rows; the rows of $1/$2 are distinct (EnergySums). */
const ADD_INTERVAL_ENERGY = `INSERT INTO interval_energy (meter, start_ms, market, import_wh, export_wh, est_import_wh, est_export_wh)
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
  ON CONFLICT (meter, start_ms) DO UPDATE SET import_wh = interval_energy.import_wh + excluded.import_wh,
    export_wh = interval_energy.export_wh + excluded.export_wh, est_import_wh = interval_energy.est_import_wh + excluded.est_import_wh,
    est_export_wh = interval_energy.est_export_wh + excluded.est_export_wh, market = excluded.market`;

/** Gaps a batch closed for good (meter $1[i], starting at stored seq $2[i]). */
const CLOSE_GAPS = `DELETE FROM meter_gaps g USING unnest($1::text[], $2::bigint[]) AS c(meter, from_seq)
  WHERE g.meter = c.meter AND g.from_seq = c.from_seq`;

/** Gaps a batch opened or changed, in their final state; the keys are distinct (MemoryChainView). */
const PUT_GAPS = `INSERT INTO meter_gaps (meter, from_seq, to_seq, opened_at_ms, estimated_at_ms, est_market, est_interval_ms, est_time_zone)
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[], $8::text[])
  ON CONFLICT (meter, from_seq) DO UPDATE SET to_seq = excluded.to_seq, opened_at_ms = excluded.opened_at_ms,
    estimated_at_ms = excluded.estimated_at_ms, est_market = excluded.est_market, est_interval_ms = excluded.est_interval_ms,
    est_time_zone = excluded.est_time_zone`;

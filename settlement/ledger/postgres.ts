import { createHash } from 'node:crypto';
import pg from 'pg';
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

/**
 * The ledger on PostgreSQL, for several settlement workers sharing one database. Same
 * contract as SqliteLedger (test/settlement/ledger-contract.test.ts runs against both).
 *
 * Concurrency: a batch commit first takes a transaction-scoped advisory lock per meter it
 * touches, in one global order (so two workers never deadlock on them), and holds them to
 * COMMIT. While a worker holds a meter's lock no other worker can add a reading of that
 * meter, so its chain decision (stored seq-1, seq, seq+1) stays true until the readings are
 * visible to everyone. Row locks alone cannot do this: a gap has no row to lock. The inserts
 * still use ON CONFLICT DO NOTHING, and a lost race (fewer rows inserted than decided, or a
 * deadlock/serialisation/unique-violation error) reruns the whole batch transaction (up to
 * MAX_TRANSACTION_ATTEMPTS times), where it turns into a 'duplicate' outcome instead of an
 * exception. An envelope id being inserted by another transaction is waited for by
 * ON CONFLICT, then seen as a duplicate.
 */

const MAX_STORED_REJECTED_PAYLOAD = 64 * 1024;
const INT8_OID = 20;
/** deadlock_detected, serialization_failure, unique_violation: rerun the transaction. */
const RETRYABLE_SQLSTATES = new Set(['40P01', '40001', '23505']);
const MAX_TRANSACTION_ATTEMPTS = 5;

/**
 * An advisory lock key (int4) for `expr`, scoped to the current schema so that ledgers in
 * different schemas of one database (tests, side-by-side deployments) never block each other.
 */
const lockKey = (expr: string) => `hashtext(coalesce(current_schema(), '') || '/gtx/' || ${expr})`;

/** BIGINT columns hold Wh, ms instants and seqs, all safe integers: read them as numbers. */
function parseInt8(s: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new RangeError(`BIGINT ${s} is outside the safe integer range`);
  return n;
}

/** PostgreSQL text cannot hold U+0000; a rejection's detail can (JSON.parse quotes the input). */
const pgText = (s: string) => s.replaceAll('\u0000', '\uFFFD');

/** Fewer rows inserted than decided: another transaction got there first. Rerun the batch. */
class LostRace extends Error {
  readonly code = '40001';
}

function isRetryable(e: unknown): boolean {
  if (e instanceof LostRace) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && RETRYABLE_SQLSTATES.has(code);
}

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

export interface PostgresLedgerOptions {
  /** Connections in this worker's pool (default 10). */
  maxConnections?: number;
}

export class PostgresLedger implements Ledger {
  readonly engine = 'postgres' as const;
  private readonly pool: pg.Pool;
  private closed = false;

  constructor(connectionString: string, opts: PostgresLedgerOptions = {}) {
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
  }

  async migrate(): Promise<void> {
    for (const m of loadMigrations('postgres')) {
      await this.transaction(async (c) => {
        // Two processes migrating at once: the second waits here, then finds the version applied.
        await c.query(`SELECT pg_advisory_xact_lock(${lockKey("'migrate'")})`);
        await c.query(
          'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)',
        );
        const applied = await c.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version]);
        if (applied.rowCount) return;
        await c.query(m.sql);
        await c.query('INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()]);
      });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  async putGateway(rec: GatewayRecord): Promise<void> {
    await this.pool.query(
      `INSERT INTO gateways (id, public_key_pem, status, created_at_ms) VALUES ($1, $2, $3, $4)
       ON CONFLICT (id) DO UPDATE SET public_key_pem = excluded.public_key_pem, status = excluded.status`,
      [rec.id, rec.publicKeyPem, rec.status, rec.createdAtMs],
    );
  }

  async getGateway(id: string): Promise<GatewayRecord | undefined> {
    const { rows } = await this.pool.query<{ id: string; public_key_pem: string; status: 'active' | 'revoked'; created_at_ms: number }>(
      'SELECT id, public_key_pem, status, created_at_ms FROM gateways WHERE id = $1',
      [id],
    );
    const row = rows[0];
    if (!row) return undefined;
    return { id: row.id as GatewayId, publicKeyPem: row.public_key_pem, status: row.status, createdAtMs: row.created_at_ms };
  }

  async commitEnvelopes(batch: VerifiedEnvelope[]): Promise<CommitOutcome[]> {
    if (batch.length === 0) return [];
    const meters = [...new Set(batch.flatMap((env) => env.readings.map((r): string => r.meter)))];
    return this.transaction(async (c) => {
      // Every meter of the batch, in ascending key order, held until COMMIT or ROLLBACK.
      await c.query(
        `SELECT count(pg_advisory_xact_lock(k)) FROM
           (SELECT DISTINCT ${lockKey("'meter/' || m")} AS k FROM unnest($1::text[]) AS m ORDER BY k) AS keys`,
        [meters],
      );
      const outcomes: CommitOutcome[] = [];
      for (const env of batch) {
        await c.query('SAVEPOINT envelope');
        const outcome = await this.commitOne(c, env);
        // A rejected or all-duplicate envelope leaves nothing behind, not even its envelope row.
        await c.query(outcome.status === 'accepted' ? 'RELEASE SAVEPOINT envelope' : 'ROLLBACK TO SAVEPOINT envelope; RELEASE SAVEPOINT envelope');
        outcomes.push(outcome);
      }
      return outcomes;
    });
  }

  /** One envelope inside its savepoint; the caller rolls the savepoint back unless accepted. */
  private async commitOne(c: pg.PoolClient, env: VerifiedEnvelope): Promise<CommitOutcome> {
    // The envelope row goes first so readings can reference it. A concurrent insert of the
    // same id makes this wait for the other transaction, then do nothing if it committed.
    const inserted = await c.query(
      `INSERT INTO envelopes (id, gateway, received_at_ms, reading_count, raw) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (id) DO NOTHING`,
      [env.id, env.gateway, env.receivedAtMs, env.readings.length, env.raw],
    );
    if (inserted.rowCount === 0) return { status: 'duplicate', id: env.id, readings: env.readings.length };

    // What the ledger holds at seq-1, seq, seq+1 of every reading, in one round trip. The
    // meter locks keep it current; readings of this envelope are added as they are decided,
    // exactly as SqliteLedger sees its own inserts.
    const keyOf = (meter: string, seq: number) => `${meter}\n${seq}`;
    const wantMeters: string[] = [];
    const wantSeqs: number[] = [];
    for (const r of env.readings) {
      for (const seq of [r.seq - 1, r.seq, r.seq + 1]) {
        wantMeters.push(r.meter);
        wantSeqs.push(seq);
      }
    }
    const { rows } = await c.query<{ meter: string; seq: number; hash: string; prev: string }>(
      `SELECT meter, seq, hash, prev FROM readings
       WHERE (meter, seq) IN (SELECT m, s FROM unnest($1::text[], $2::bigint[]) AS want(m, s))`,
      [wantMeters, wantSeqs],
    );
    const known = new Map(rows.map((row) => [keyOf(row.meter, row.seq), { hash: row.hash, prev: row.prev }]));

    const fresh: VerifiedEnvelope['readings'] = [];
    let duplicates = 0;
    for (const r of env.readings) {
      const at = (seq: number) => known.get(keyOf(r.meter, seq));
      // Exactly the neighbour fields SqliteLedger passes: the two engines must decide alike.
      const d = decideReading(r, { same: at(r.seq), before: at(r.seq - 1), after: at(r.seq + 1) });
      if (d.kind === 'reject') return { status: 'rejected', id: env.id, reason: d.reason, detail: d.detail };
      if (d.kind === 'duplicate') {
        duplicates++;
        continue;
      }
      known.set(keyOf(r.meter, r.seq), { hash: r.hash, prev: r.prev });
      fresh.push(r);
    }
    // Every reading was already stored (e.g. the same readings re-batched).
    if (fresh.length === 0) return { status: 'duplicate', id: env.id, readings: env.readings.length };

    const res = await c.query(
      `INSERT INTO readings (meter, seq, envelope_id, gateway, ts_ms, import_wh, export_wh, power_w,
         voltage_mv, current_ma, frequency_mhz, prev, hash, received_at_ms)
       SELECT meter, seq, $1, $2, ts_ms, import_wh, export_wh, power_w, voltage_mv, current_ma, frequency_mhz, prev, hash, $3
       FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[],
                   $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[])
         AS r(meter, seq, ts_ms, import_wh, export_wh, power_w, voltage_mv, current_ma, frequency_mhz, prev, hash)
       ON CONFLICT (meter, seq) DO NOTHING`,
      [
        env.id,
        env.gateway,
        env.receivedAtMs,
        fresh.map((r) => r.meter),
        fresh.map((r) => r.seq),
        fresh.map((r) => Date.parse(r.ts)),
        fresh.map((r) => r.importWh),
        fresh.map((r) => r.exportWh),
        fresh.map((r) => r.powerW),
        fresh.map((r) => r.voltageMilliV ?? null),
        fresh.map((r) => r.currentMilliA ?? null),
        fresh.map((r) => r.frequencyMilliHz ?? null),
        fresh.map((r) => r.prev),
        fresh.map((r) => r.hash),
      ],
    );
    if (res.rowCount !== fresh.length) {
      throw new LostRace(`envelope ${env.id}: ${fresh.length - (res.rowCount ?? 0)} reading(s) were stored concurrently`);
    }
    return { status: 'accepted', id: env.id, inserted: fresh.length, duplicates };
  }

  async recordRejection(r: RejectionRecord): Promise<void> {
    await this.pool.query(
      `INSERT INTO rejections (received_at_ms, topic, gateway, envelope_id, reason, detail, payload, payload_bytes, payload_sha256)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        r.receivedAtMs,
        pgText(r.topic),
        r.gateway === null ? null : pgText(r.gateway),
        r.envelopeId === null ? null : pgText(r.envelopeId),
        r.reason,
        pgText(r.detail),
        r.payload.subarray(0, MAX_STORED_REJECTED_PAYLOAD),
        r.payload.length,
        createHash('sha256').update(r.payload).digest('hex'),
      ],
    );
  }

  async counts(): Promise<LedgerCounts> {
    const { rows } = await this.pool.query<LedgerCounts>(
      `SELECT (SELECT count(*) FROM envelopes) AS envelopes, (SELECT count(*) FROM readings) AS readings,
              (SELECT count(*) FROM rejections) AS rejections`,
    );
    return rows[0]!;
  }

  async meters(): Promise<Array<{ meter: MeterId; readings: number; lastSeq: number }>> {
    const { rows } = await this.pool.query<{ meter: string; n: number; last: number }>(
      'SELECT meter, count(*) AS n, max(seq) AS last FROM readings GROUP BY meter ORDER BY meter',
    );
    return rows.map((r) => ({ meter: r.meter as MeterId, readings: r.n, lastSeq: r.last }));
  }

  async readings(meter: string): Promise<StoredReading[]> {
    const { rows } = await this.pool.query<ReadingRow>('SELECT * FROM readings WHERE meter = $1 ORDER BY seq', [meter]);
    return rows.map(toStoredReading);
  }

  async envelopesWithMeter(meter: string): Promise<StoredEnvelope[]> {
    const { rows } = await this.pool.query<{ id: string; gateway: string; raw: string; received_at_ms: number; reading_count: number }>(
      `SELECT e.id, e.gateway, e.raw, e.received_at_ms, e.reading_count FROM envelopes e
       WHERE e.id IN (SELECT DISTINCT envelope_id FROM readings WHERE meter = $1) ORDER BY e.received_at_ms, e.id`,
      [meter],
    );
    return rows.map((r) => ({
      id: r.id as EnvelopeId,
      gateway: r.gateway as GatewayId,
      raw: r.raw,
      receivedAtMs: r.received_at_ms,
      readingCount: r.reading_count,
    }));
  }

  async rejections(limit = 100): Promise<StoredRejection[]> {
    const { rows } = await this.pool.query<{
      id: number;
      received_at_ms: number;
      topic: string;
      gateway: string | null;
      envelope_id: string | null;
      reason: StoredRejection['reason'];
      detail: string;
      payload_bytes: number;
      payload_sha256: string;
    }>(
      `SELECT id, received_at_ms, topic, gateway, envelope_id, reason, detail, payload_bytes, payload_sha256
       FROM rejections ORDER BY id DESC LIMIT $1`,
      [limit],
    );
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

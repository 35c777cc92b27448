import { sql } from 'kysely';
import type { EnvelopeId, GatewayId, MeterId } from '../../protocol/index.ts';
import { KyselyRegistryStore } from '../registry/registry-store.ts';
import type { Account, EnrollmentCodeRecord, EnrollOutcome, Market, MeterRecord, RegistryStore } from '../registry/registry.ts';
import type { LedgerDb } from '../store/database.ts';
import { gaps, intervalEnergy, marketIntervals } from './energy-queries.ts';
import type { GapRow, GatewayRecord, GatewayStatus, IntervalRow, LedgerCounts, MarketIntervalRow, StoredEnvelope, StoredReading, StoredRejection } from './ledger.ts';
import { rejectionSamples, rejectionTotal } from './rejection-store.ts';
import { READING_COLUMNS, toStoredReading, type ReadingRow } from './rows.ts';

/**
 * Everything of the Ledger that is written once for both engines, through the query builder:
 * the registry (registry/registry-store.ts) and the read queries. Each engine extends this,
 * supplies `db` over its own connection(s), and adds what is its own: migrations, the hot commit
 * path (readings store) and the job lock.
 */
export abstract class SharedLedgerQueries {
  abstract readonly db: LedgerDb;
  private store?: KyselyRegistryStore;

  private get registry(): KyselyRegistryStore {
    return (this.store ??= new KyselyRegistryStore(this.db));
  }

  // ---- registry: one implementation, delegated ---------------------------------------------
  putGateway(rec: GatewayRecord): Promise<void> {
    return this.registry.putGateway(rec);
  }
  getGateway(id: string): Promise<GatewayRecord | undefined> {
    return this.registry.getGateway(id);
  }
  setGatewayStatus(id: string, status: GatewayStatus, atMs: number): Promise<boolean> {
    return this.registry.setGatewayStatus(id, status, atMs);
  }
  putMarket(m: Market): Promise<void> {
    return this.registry.putMarket(m);
  }
  getMarket(id: string): Promise<Market | undefined> {
    return this.registry.getMarket(id);
  }
  listMarkets(): Promise<Market[]> {
    return this.registry.listMarkets();
  }
  putAccount(a: Account): Promise<void> {
    return this.registry.putAccount(a);
  }
  getAccount(id: string): Promise<Account | undefined> {
    return this.registry.getAccount(id);
  }
  putEnrollmentCode(c: EnrollmentCodeRecord): Promise<void> {
    return this.registry.putEnrollmentCode(c);
  }
  getEnrollmentCode(codeHash: string): Promise<EnrollmentCodeRecord | undefined> {
    return this.registry.getEnrollmentCode(codeHash);
  }
  enroll(input: Parameters<RegistryStore['enroll']>[0]): Promise<EnrollOutcome> {
    return this.registry.enroll(input);
  }
  getMeter(id: string): Promise<MeterRecord | undefined> {
    return this.registry.getMeter(id);
  }
  listMeters(filter?: { gateway?: string; market?: string }): Promise<MeterRecord[]> {
    return this.registry.listMeters(filter);
  }

  // ---- reads ---------------------------------------------------------------------------------
  async counts(): Promise<LedgerCounts> {
    const count = async (table: 'envelopes' | 'readings') =>
      Number((await this.db.selectFrom(table).select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow()).n);
    return { envelopes: await count('envelopes'), readings: await count('readings'), rejections: await rejectionTotal(this.db) };
  }

  async meters(): Promise<Array<{ meter: MeterId; readings: number; lastSeq: number }>> {
    const rows = await this.db
      .selectFrom('readings')
      .select(['meter', sql<number>`count(*)`.as('n'), sql<number>`max(seq)`.as('last')])
      .groupBy('meter')
      .orderBy('meter')
      .execute();
    return rows.map((r) => ({ meter: r.meter as MeterId, readings: Number(r.n), lastSeq: Number(r.last) }));
  }

  async readings(meter: string): Promise<StoredReading[]> {
    const rows = await this.db
      .selectFrom('readings as r')
      .innerJoin('envelopes as e', 'e.ref', 'r.envelope_ref')
      .select(READING_COLUMNS)
      .where('r.meter', '=', meter)
      .orderBy('r.seq')
      .execute();
    return rows.map((r) => toStoredReading(r as ReadingRow));
  }

  async envelopesWithMeter(meter: string): Promise<StoredEnvelope[]> {
    const rows = await this.db
      .selectFrom('envelopes as e')
      .select(['e.id', 'e.gateway', 'e.signed', 'e.sig', 'e.received_at_ms', 'e.reading_count'])
      .where('e.ref', 'in', (eb) => eb.selectFrom('readings').select('envelope_ref').where('meter', '=', meter))
      .orderBy('e.received_at_ms')
      .orderBy('e.id')
      .execute();
    return rows.map((r) => ({
      id: r.id as EnvelopeId,
      gateway: r.gateway as GatewayId,
      signed: r.signed,
      sig: r.sig,
      receivedAtMs: r.received_at_ms,
      readingCount: r.reading_count,
    }));
  }

  rejections(limit = 100): Promise<StoredRejection[]> {
    return rejectionSamples(this.db, limit);
  }

  intervalEnergy(meter: string, fromMs: number, toMs: number): Promise<IntervalRow[]> {
    return intervalEnergy(this.db, meter, fromMs, toMs);
  }

  marketIntervals(market: string, fromMs: number, toMs: number): Promise<MarketIntervalRow[]> {
    return marketIntervals(this.db, market, fromMs, toMs);
  }

  gaps(meter: string): Promise<GapRow[]> {
    return gaps(this.db, meter);
  }
}

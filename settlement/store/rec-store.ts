import { sql, type Selectable } from 'kysely';
import type { LedgerDb, RecsTable } from './database.ts';
import type { Trx } from './money-store.ts';

/** Certificates and what each meter-hour has had certified (migration 008), once for both engines. */
export interface RecRecord {
  id: string;
  meter: string;
  generatorOwner: string;
  owner: string;
  energySource: string;
  market: string;
  periodStartMs: number;
  periodEndMs: number;
  volumeWh: number;
  issuedAtMs: number;
  status: RecsTable['status'];
  firstSeq: number;
  lastSeq: number;
  envelopes: string[];
  /** For sale: minor units of `currency` per kWh. */
  listing: { price: bigint; currency: string } | null;
  /** The certificate this one was split from (partial retirement); same provenance. */
  parent: string | null;
  retirement: { atMs: number; reason: string; beneficiary: string } | null;
}

export const HOUR_MS = 3_600_000;

const toRec = (r: Selectable<RecsTable>): RecRecord => ({
  id: r.id,
  meter: r.meter,
  generatorOwner: r.generator_owner,
  owner: r.owner,
  energySource: r.energy_source,
  market: r.market,
  periodStartMs: Number(r.period_start_ms),
  periodEndMs: Number(r.period_end_ms),
  volumeWh: Number(r.volume_wh),
  issuedAtMs: Number(r.issued_at_ms),
  status: r.status,
  firstSeq: Number(r.first_seq),
  lastSeq: Number(r.last_seq),
  envelopes: JSON.parse(r.envelopes) as string[],
  listing: r.price === null || r.currency === null ? null : { price: BigInt(r.price), currency: r.currency },
  parent: r.parent,
  retirement: r.retired_at_ms === null ? null : { atMs: Number(r.retired_at_ms), reason: r.retire_reason ?? '', beneficiary: r.beneficiary ?? '' },
});

export class RecStore {
  constructor(private readonly db: LedgerDb) {}

  /**
   * Exact (not estimated) export per UTC hour of a meter's energy intervals starting in
   * [fromMs, toMs), with what is certified of each: the hours where there is more to certify.
   */
  async uncertifiedHours(meter: string, fromMs: number, toMs: number): Promise<Array<{ hourStartMs: number; exactWh: number; certifiedWh: number }>> {
    // A literal, not a parameter: bound numbers can make the division a float one (SQLite REAL, PostgreSQL numeric).
    const hour = sql<number>`(ie.start_ms / ${sql.lit(HOUR_MS)}) * ${sql.lit(HOUR_MS)}`;
    const rows = await this.db
      .selectFrom('interval_energy as ie')
      .select([hour.as('hour'), sql<number>`sum(ie.export_wh - ie.est_export_wh)`.as('exact')])
      .where('ie.meter', '=', meter)
      .where('ie.start_ms', '>=', fromMs)
      .where('ie.start_ms', '<', toMs)
      .groupBy(hour)
      .orderBy(hour)
      .execute();
    if (rows.length === 0) return [];
    const covered = await this.db
      .selectFrom('rec_coverage')
      .select(['hour_start_ms', 'certified_wh'])
      .where('meter', '=', meter)
      .where('hour_start_ms', '>=', fromMs)
      .where('hour_start_ms', '<', toMs)
      .execute();
    const certified = new Map(covered.map((c) => [Number(c.hour_start_ms), Number(c.certified_wh)]));
    return rows
      .map((r) => ({ hourStartMs: Number(r.hour), exactWh: Number(r.exact), certifiedWh: certified.get(Number(r.hour)) ?? 0 }))
      .filter((h) => h.exactWh > h.certifiedWh);
  }

  /** Inside a minting transaction: the hour's exact export and certified Wh, as they are now. */
  async hourState(trx: Trx, meter: string, hourStartMs: number): Promise<{ exactWh: number; certifiedWh: number }> {
    const e = await trx
      .selectFrom('interval_energy')
      .select(sql<number>`coalesce(sum(export_wh - est_export_wh), 0)`.as('exact'))
      .where('meter', '=', meter)
      .where('start_ms', '>=', hourStartMs)
      .where('start_ms', '<', hourStartMs + HOUR_MS)
      .executeTakeFirst();
    const c = await trx.selectFrom('rec_coverage').select('certified_wh').where('meter', '=', meter).where('hour_start_ms', '=', hourStartMs).executeTakeFirst();
    return { exactWh: Number(e?.exact ?? 0), certifiedWh: Number(c?.certified_wh ?? 0) };
  }

  /** Creates the hour's coverage row if missing: on SQLite the write that takes the lock first. */
  async touchCoverage(trx: Trx, meter: string, hourStartMs: number): Promise<void> {
    await trx.insertInto('rec_coverage').values({ meter, hour_start_ms: hourStartMs, certified_wh: 0 }).onConflict((oc) => oc.columns(['meter', 'hour_start_ms']).doNothing()).execute();
  }

  async setCoverage(trx: Trx, meter: string, hourStartMs: number, certifiedWh: number): Promise<void> {
    await trx.updateTable('rec_coverage').set({ certified_wh: certifiedWh }).where('meter', '=', meter).where('hour_start_ms', '=', hourStartMs).execute();
  }

  /** The stored reading of `meter` nearest at or below `seq` (or at or above with `up`), with its time. */
  async readingNear(trx: Trx, meter: string, seq: number, up: boolean): Promise<{ seq: number; tsMs: number } | undefined> {
    const r = await trx
      .selectFrom('readings')
      .select(['seq', 'ts_ms'])
      .where('meter', '=', meter)
      .where('seq', up ? '>=' : '<=', seq)
      .orderBy('seq', up ? 'asc' : 'desc')
      .limit(1)
      .executeTakeFirst();
    return r && { seq: Number(r.seq), tsMs: Number(r.ts_ms) };
  }

  async seqRange(trx: Trx, meter: string): Promise<{ min: number; max: number } | undefined> {
    const r = await trx.selectFrom('readings').select((eb) => [eb.fn.min('seq').as('min'), eb.fn.max('seq').as('max')]).where('meter', '=', meter).executeTakeFirst();
    return r?.min === null || r?.min === undefined ? undefined : { min: Number(r.min), max: Number(r.max) };
  }

  /** Envelope ids of the meter's readings firstSeq..lastSeq, in order of first appearance. */
  async envelopesOf(trx: Trx, meter: string, firstSeq: number, lastSeq: number): Promise<string[]> {
    const rows = await trx
      .selectFrom('readings as r')
      .innerJoin('envelopes as e', 'e.ref', 'r.envelope_ref')
      .select(['e.id', 'r.seq'])
      .where('r.meter', '=', meter)
      .where('r.seq', '>=', firstSeq)
      .where('r.seq', '<=', lastSeq)
      .orderBy('r.seq')
      .execute();
    return [...new Set(rows.map((r) => r.id))];
  }

  async insert(trx: Trx, r: RecRecord): Promise<void> {
    await trx
      .insertInto('recs')
      .values({
        id: r.id,
        meter: r.meter,
        generator_owner: r.generatorOwner,
        owner: r.owner,
        energy_source: r.energySource,
        market: r.market,
        period_start_ms: r.periodStartMs,
        period_end_ms: r.periodEndMs,
        volume_wh: r.volumeWh,
        issued_at_ms: r.issuedAtMs,
        status: r.status,
        first_seq: r.firstSeq,
        last_seq: r.lastSeq,
        envelopes: JSON.stringify(r.envelopes),
        price: r.listing?.price.toString() ?? null,
        currency: r.listing?.currency ?? null,
        parent: r.parent,
        retired_at_ms: r.retirement?.atMs ?? null,
        retire_reason: r.retirement?.reason ?? null,
        beneficiary: r.retirement?.beneficiary ?? null,
      })
      .execute();
  }

  async get(id: string, db: LedgerDb | Trx = this.db): Promise<RecRecord | undefined> {
    const r = await db.selectFrom('recs').selectAll().where('id', '=', id).executeTakeFirst();
    return r && toRec(r);
  }

  /** Puts a held certificate up for sale; false unless `owner` holds it active or bought. */
  async putForSale(trx: Trx, id: string, owner: string, price: bigint, currency: string): Promise<boolean> {
    const r = await trx
      .updateTable('recs')
      .set({ status: 'for_sale', price: price.toString(), currency })
      .where('id', '=', id)
      .where('owner', '=', owner)
      .where('status', 'in', ['active', 'sold'])
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Takes a listing back; false unless `owner` has it for sale. */
  async withdraw(trx: Trx, id: string, owner: string): Promise<boolean> {
    const r = await trx.updateTable('recs').set({ status: 'active', price: null, currency: null }).where('id', '=', id).where('owner', '=', owner).where('status', '=', 'for_sale').executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Hands a listed certificate to its buyer; false when it is no longer for sale (someone bought it first). */
  async sell(trx: Trx, id: string, seller: string, buyer: string): Promise<boolean> {
    const r = await trx
      .updateTable('recs')
      .set({ status: 'sold', owner: buyer, price: null, currency: null })
      .where('id', '=', id)
      .where('owner', '=', seller)
      .where('status', '=', 'for_sale')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Retires a held certificate (final); false unless `owner` holds it active or bought. */
  async retire(trx: Trx, id: string, owner: string, atMs: number, reason: string, beneficiary: string): Promise<boolean> {
    const r = await trx
      .updateTable('recs')
      .set({ status: 'retired', retired_at_ms: atMs, retire_reason: reason, beneficiary, price: null, currency: null })
      .where('id', '=', id)
      .where('owner', '=', owner)
      .where('status', 'in', ['active', 'sold'])
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Lowers a held certificate's volume (its other part was split off); false unless held as described. */
  async shrink(trx: Trx, id: string, owner: string, fromWh: number, toWh: number): Promise<boolean> {
    const r = await trx
      .updateTable('recs')
      .set({ volume_wh: toWh })
      .where('id', '=', id)
      .where('owner', '=', owner)
      .where('volume_wh', '=', fromWh)
      .where('status', 'in', ['active', 'sold'])
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Certificates of `meter` whose production period overlaps [fromMs, toMs). */
  async overlapping(meter: string, fromMs: number, toMs: number, limit = 10_000): Promise<RecRecord[]> {
    const rows = await this.db.selectFrom('recs').selectAll().where('meter', '=', meter).where('period_start_ms', '<', toMs).where('period_end_ms', '>', fromMs).orderBy('period_start_ms').orderBy('id').limit(limit).execute();
    return rows.map(toRec);
  }

  /** What rec_coverage says is certified per hour of `meter` in [fromMs, toMs). */
  async coverage(meter: string, fromMs: number, toMs: number): Promise<Map<number, number>> {
    const rows = await this.db.selectFrom('rec_coverage').select(['hour_start_ms', 'certified_wh']).where('meter', '=', meter).where('hour_start_ms', '>=', fromMs).where('hour_start_ms', '<', toMs).execute();
    return new Map(rows.map((r) => [Number(r.hour_start_ms), Number(r.certified_wh)]));
  }

  async list(filter: { owner?: string; generator?: string; source?: string; status?: RecRecord['status']; meter?: string; hourStartMs?: number; limit?: number }): Promise<RecRecord[]> {
    let q = this.db.selectFrom('recs').selectAll().orderBy('period_start_ms', 'desc').orderBy('id');
    if (filter.owner !== undefined) q = q.where('owner', '=', filter.owner);
    if (filter.generator !== undefined) q = q.where('meter', '=', filter.generator);
    if (filter.source !== undefined) q = q.where('energy_source', '=', filter.source);
    if (filter.status !== undefined) q = q.where('status', '=', filter.status);
    if (filter.meter !== undefined) q = q.where('meter', '=', filter.meter);
    if (filter.hourStartMs !== undefined) q = q.where('period_start_ms', '=', filter.hourStartMs);
    return (await q.limit(filter.limit ?? 500).execute()).map(toRec);
  }
}

import type { LedgerDb } from '../store/database.ts';

/** A meter moved from a revoked gateway to the one that replaces it. */
export interface Handover {
  meter: string;
  /** The first seq the new gateway signs: the ledger's chain head at the hand-over, plus one. */
  fromSeq: number;
  oldGateway: string;
  newGateway: string;
  atMs: number;
}

/** Where each meter's hash chain stands: its highest stored reading. */
export interface ChainHead {
  meter: string;
  seq: number;
  hash: string;
}

/** Chain heads and gateway hand-overs, written once for both engines (store/database.ts). */
export class HandoverStore {
  constructor(private readonly db: LedgerDb) {}

  async chainHeads(meters: string[]): Promise<ChainHead[]> {
    if (meters.length === 0) return [];
    const rows = await this.db
      .selectFrom('readings as r')
      .select(['r.meter', 'r.seq', 'r.hash'])
      .where('r.meter', 'in', meters)
      .where((eb) => eb('r.seq', '=', eb.selectFrom('readings as h').select((h) => h.fn.max('h.seq').as('top')).whereRef('h.meter', '=', 'r.meter')))
      .orderBy('r.meter')
      .execute();
    return rows.map((r) => ({ meter: r.meter, seq: Number(r.seq), hash: r.hash }));
  }

  async record(h: Handover): Promise<void> {
    await this.db
      .insertInto('meter_handovers')
      .values({ meter: h.meter, from_seq: h.fromSeq, old_gateway: h.oldGateway, new_gateway: h.newGateway, at_ms: h.atMs })
      .onConflict((oc) => oc.columns(['meter', 'from_seq']).doNothing())
      .execute();
  }

  async forMeter(meter: string): Promise<Handover[]> {
    const rows = await this.db.selectFrom('meter_handovers').selectAll().where('meter', '=', meter).orderBy('from_seq').execute();
    return rows.map((r) => ({ meter: r.meter, fromSeq: Number(r.from_seq), oldGateway: r.old_gateway, newGateway: r.new_gateway, atMs: Number(r.at_ms) }));
  }
}

import type { GatewayStatus } from '../ledger/ledger.ts';
import type { LedgerDb } from './database.ts';

/**
 * Registered gateways with their owner, meters and when their last reading arrived, written
 * once for both engines. The owner is the account of the code the gateway enrolled with (its
 * meters carry the same owner; they are the fallback for gateways registered without a code).
 */
export interface GatewayOverview {
  id: string;
  status: GatewayStatus;
  createdAtMs: number;
  revokedAtMs: number | null;
  owner: string | null;
  meters: string[];
  /** When the newest stored reading of its meters was received; null without readings. */
  lastReadingAtMs: number | null;
}

export class GatewayStore {
  constructor(private readonly db: LedgerDb) {}

  /** Gateways in id order after `after`, at most `limit`; `owners` null: every owner's. */
  async list(opts: { owners: readonly string[] | null; after?: string; limit: number }): Promise<GatewayOverview[]> {
    if (opts.owners?.length === 0) return [];
    let q = this.db.selectFrom('gateways').select(['id', 'status', 'created_at_ms', 'revoked_at_ms']).orderBy('id').limit(opts.limit);
    if (opts.owners) {
      const owners = [...opts.owners];
      q = q.where((eb) =>
        eb.or([
          eb('id', 'in', eb.selectFrom('enrollment_codes').select('used_by').where('owner', 'in', owners).where('used_by', 'is not', null).$narrowType<{ used_by: string }>()),
          eb('id', 'in', eb.selectFrom('meters').select('gateway').where('owner', 'in', owners)),
        ]),
      );
    }
    if (opts.after !== undefined) q = q.where('id', '>', opts.after);
    const gateways = await q.execute();
    if (gateways.length === 0) return [];
    const ids = gateways.map((g) => g.id);
    const codeOwner = new Map<string, string>();
    for (const c of await this.db.selectFrom('enrollment_codes').select(['used_by', 'owner']).where('used_by', 'in', ids).execute()) {
      if (c.used_by !== null) codeOwner.set(c.used_by, c.owner);
    }
    const meters = await this.db
      .selectFrom('meters as m')
      .leftJoin('readings as r', (j) =>
        j.onRef('r.meter', '=', 'm.id').on((eb) => eb('r.seq', '=', eb.selectFrom('readings as h').select((h) => h.fn.max('h.seq').as('top')).whereRef('h.meter', '=', 'm.id'))),
      )
      .select(['m.id', 'm.gateway', 'm.owner', 'r.received_at_ms'])
      .where('m.gateway', 'in', ids)
      .orderBy('m.id')
      .execute();
    const byGateway = new Map<string, { meters: string[]; owner: string | null; last: number | null }>(ids.map((id) => [id, { meters: [], owner: null, last: null }]));
    for (const m of meters) {
      const g = byGateway.get(m.gateway)!;
      g.meters.push(m.id);
      g.owner ??= m.owner;
      if (m.received_at_ms !== null) g.last = Math.max(g.last ?? 0, Number(m.received_at_ms));
    }
    return gateways.map((gw) => {
      const g = byGateway.get(gw.id)!;
      return {
        id: gw.id,
        status: gw.status,
        createdAtMs: Number(gw.created_at_ms),
        revokedAtMs: gw.revoked_at_ms === null ? null : Number(gw.revoked_at_ms),
        owner: codeOwner.get(gw.id) ?? g.owner,
        meters: g.meters,
        lastReadingAtMs: g.last,
      };
    });
  }
}

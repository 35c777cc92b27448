import { sql } from 'kysely';
import type { GatewayRecord, GatewayStatus } from '../ledger/ledger.ts';
import { refuseCode, refuseGateway, refuseMeters, toAccount, toCode, toGateway, toMarket, toMeter, type MeterRow, type Refusal } from '../ledger/rows.ts';
import type { LedgerDb } from '../store/database.ts';
import type { Account, EnrollmentCodeRecord, EnrollOutcome, Market, MeterRecord, RegistryStore } from './registry.ts';

/**
 * Who and what the settlement knows — markets, accounts, gateways, meters, enrollment codes —
 * written once for both engines with the query builder (store/database.ts).
 *
 * Enrollment is one transaction that claims its code with a conditional UPDATE (… WHERE
 * used_at_ms IS NULL), so of two enrollments with one code the second waits on the row and then
 * finds it used. On PostgreSQL two enrollments with different codes that insert the same gateway
 * or meter collide on the primary key (unique_violation): the loser is run again and then refused
 * as gateway_exists or meter_taken. On SQLite the file's one writer serialises them anyway.
 */
export class KyselyRegistryStore implements RegistryStore {
  constructor(private readonly db: LedgerDb) {}

  /** Replaces the record except its first registration time; absent optional fields become null. */
  async putGateway(rec: GatewayRecord): Promise<void> {
    await this.db
      .insertInto('gateways')
      .values({
        id: rec.id,
        public_key_pem: rec.publicKeyPem,
        status: rec.status,
        created_at_ms: rec.createdAtMs,
        mqtt_secret_hash: rec.mqttSecretHash ?? null,
        revoked_at_ms: rec.revokedAtMs ?? null,
      })
      .onConflict((oc) =>
        oc.column('id').doUpdateSet({
          public_key_pem: sql`excluded.public_key_pem`,
          status: sql`excluded.status`,
          mqtt_secret_hash: sql`excluded.mqtt_secret_hash`,
          revoked_at_ms: sql`excluded.revoked_at_ms`,
        }),
      )
      .execute();
  }

  async getGateway(id: string): Promise<GatewayRecord | undefined> {
    const row = await this.db.selectFrom('gateways').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toGateway(row);
  }

  /**
   * Revoking stamps `atMs` (a gateway revoked again keeps its first stamp); any other status
   * clears the stamp. False when the gateway is unknown.
   */
  async setGatewayStatus(id: string, status: GatewayStatus, atMs: number): Promise<boolean> {
    const res = await this.db
      .updateTable('gateways')
      .set((eb) => ({
        status,
        revoked_at_ms:
          status !== 'revoked'
            ? null
            : eb.case().when(eb.and([eb('status', '=', 'revoked'), eb('revoked_at_ms', 'is not', null)])).then(eb.ref('revoked_at_ms')).else(atMs).end(),
      }))
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) > 0;
  }

  /** Creates or renames/re-zones a market; its creation time is the first put's. */
  async putMarket(m: Market): Promise<void> {
    await this.db
      .insertInto('markets')
      .values({ id: m.id, name: m.name, time_zone: m.timeZone, interval_minutes: m.intervalMinutes, created_at_ms: Date.now() })
      .onConflict((oc) =>
        oc.column('id').doUpdateSet({ name: sql`excluded.name`, time_zone: sql`excluded.time_zone`, interval_minutes: sql`excluded.interval_minutes` }),
      )
      .execute();
  }

  async getMarket(id: string): Promise<Market | undefined> {
    const row = await this.db.selectFrom('markets').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toMarket(row);
  }

  async listMarkets(): Promise<Market[]> {
    return (await this.db.selectFrom('markets').selectAll().orderBy('id').execute()).map(toMarket);
  }

  async putAccount(a: Account): Promise<void> {
    await this.db
      .insertInto('accounts')
      .values({ id: a.id, name: a.name, created_at_ms: a.createdAtMs })
      .onConflict((oc) => oc.column('id').doUpdateSet({ name: sql`excluded.name` }))
      .execute();
  }

  async getAccount(id: string): Promise<Account | undefined> {
    const row = await this.db.selectFrom('accounts').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toAccount(row);
  }

  async putEnrollmentCode(c: EnrollmentCodeRecord): Promise<void> {
    const row = {
      code_hash: c.codeHash,
      market: c.market,
      owner: c.owner,
      created_at_ms: c.createdAtMs,
      expires_at_ms: c.expiresAtMs,
      used_at_ms: c.usedAtMs,
      used_by: c.usedBy,
    };
    await this.db
      .insertInto('enrollment_codes')
      .values(row)
      .onConflict((oc) => oc.column('code_hash').doUpdateSet({ ...row, code_hash: undefined }))
      .execute();
  }

  async getEnrollmentCode(codeHash: string): Promise<EnrollmentCodeRecord | undefined> {
    const row = await this.db.selectFrom('enrollment_codes').selectAll().where('code_hash', '=', codeHash).executeTakeFirst();
    return row && toCode(row);
  }

  /**
   * One transaction, checked in this order: the code exists, is unused and unexpired at `nowMs`;
   * the gateway id is new; no meter id is enrolled by a live gateway (a revoked gateway's meter may
   * move to its replacement). Then the gateway (active) and its meters are stored. A refusal rolls
   * everything back, the claim on the code included.
   */
  async enroll(input: Parameters<RegistryStore['enroll']>[0]): Promise<EnrollOutcome> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.transaction().execute(async (trx): Promise<EnrollOutcome> => {
          const claimed = await trx
            .updateTable('enrollment_codes')
            .set({ used_at_ms: input.nowMs, used_by: input.gateway })
            .where('code_hash', '=', input.codeHash)
            .where('used_at_ms', 'is', null)
            .where('expires_at_ms', '>', input.nowMs)
            .executeTakeFirst();
          if (Number(claimed.numUpdatedRows) === 0) {
            const code = await trx.selectFrom('enrollment_codes').selectAll().where('code_hash', '=', input.codeHash).executeTakeFirst();
            const problem = refuseCode(code && toCode(code), input.nowMs);
            // Unused and unexpired, yet not claimed: a concurrent claim rolled back in between.
            if (!problem) throw new LostRace(`enrollment code ${input.codeHash} changed while being claimed`);
            throw new EnrollRefused(problem);
          }
          const gw = await trx.selectFrom('gateways').selectAll().where('id', '=', input.gateway).executeTakeFirst();
          if (gw) throw new EnrollRefused(refuseGateway(toGateway(gw)));
          const ids = input.meters.map((m): string => m.id);
          const taken = await trx
            .selectFrom('meters as m')
            .innerJoin('gateways as g', 'g.id', 'm.gateway')
            .select(['m.id', 'm.gateway'])
            .where('m.id', 'in', ids)
            .where('g.status', '<>', 'revoked')
            .orderBy('m.id')
            .execute();
          const meterProblem = refuseMeters(ids, taken);
          if (meterProblem) throw new EnrollRefused(meterProblem);

          await trx
            .insertInto('gateways')
            .values({ id: input.gateway, public_key_pem: input.publicKeyPem, status: 'active', created_at_ms: input.nowMs, mqtt_secret_hash: input.mqttSecretHash, revoked_at_ms: null })
            .execute();
          // Taking over only a revoked gateway's meter; a meter enrolled concurrently by a live
          // gateway makes the row count short, and the rerun reports it as meter_taken.
          const stored = await trx
            .insertInto('meters')
            .values(
              input.meters.map((m) => ({
                id: m.id,
                gateway: input.gateway,
                model: m.model,
                role: m.role,
                rated_power_w: m.ratedPowerW,
                energy_source: m.energySource,
                market: m.market,
                owner: m.owner,
                created_at_ms: m.createdAtMs,
              })),
            )
            .onConflict((oc) =>
              oc
                .column('id')
                .doUpdateSet({
                  gateway: sql`excluded.gateway`,
                  model: sql`excluded.model`,
                  role: sql`excluded.role`,
                  rated_power_w: sql`excluded.rated_power_w`,
                  energy_source: sql`excluded.energy_source`,
                  market: sql`excluded.market`,
                  owner: sql`excluded.owner`,
                })
                .where((eb) => eb(eb.selectFrom('gateways as g').select('g.status').whereRef('g.id', '=', 'meters.gateway'), '=', 'revoked')),
            )
            .executeTakeFirst();
          if (Number(stored.numInsertedOrUpdatedRows ?? 0n) !== ids.length) throw new LostRace(`a meter of gateway ${input.gateway} was enrolled concurrently`);
          return { ok: true };
        });
      } catch (e) {
        if (e instanceof EnrollRefused) return e.outcome;
        if (attempt < MAX_ATTEMPTS && isLostRace(e)) continue;
        throw e;
      }
    }
  }

  async getMeter(id: string): Promise<MeterRecord | undefined> {
    const row = await this.db.selectFrom('meters').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toMeter(row as MeterRow);
  }

  async listMeters(filter: { gateway?: string; market?: string } = {}): Promise<MeterRecord[]> {
    let q = this.db.selectFrom('meters').selectAll().orderBy('id');
    if (filter.gateway !== undefined) q = q.where('gateway', '=', filter.gateway);
    if (filter.market !== undefined) q = q.where('market', '=', filter.market);
    return (await q.execute()).map((r) => toMeter(r as MeterRow));
  }
}

const MAX_ATTEMPTS = 5;

/** An enrollment refusal, thrown out of the transaction so that it rolls back. */
class EnrollRefused extends Error {
  constructor(readonly outcome: Refusal) {
    super(outcome.detail);
  }
}

/** Another enrollment got there first; the transaction is run again. */
class LostRace extends Error {}

/** PostgreSQL: unique_violation, serialization_failure, deadlock_detected. */
function isLostRace(e: unknown): boolean {
  if (e instanceof LostRace) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return code === '23505' || code === '40001' || code === '40P01';
}

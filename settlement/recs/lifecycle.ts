import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { InsufficientFunds, move, ownerAccount } from '../market/accounts.ts';
import { DomainError } from '../domain-error.ts';
import { valueOf } from '../market/money.ts';
import { CURRENCIES, type Currency, type Minor } from '../market/types.ts';
import type { MoneyStore } from '../store/money-store.ts';
import type { RecRecord, RecStore } from '../store/rec-store.ts';

/**
 * A certificate's life after minting: Active → ForSale (a price per kWh in a stable credit) →
 * Sold (the payment moves from buyer to seller in the same transaction, through the money
 * journal); a listing can be withdrawn; Active or Sold → Retired (reason, beneficiary), final.
 * Retiring part of a certificate splits it: the retired part becomes a new certificate with the
 * same provenance (parent = the original), the original keeps the rest.
 *
 * Each step is one conditional update on the certificate's status and holder, first in its
 * transaction, so a second buyer or a second retirement finds it changed and is refused.
 */
export class RecLifecycle {
  constructor(
    private readonly recs: RecStore,
    private readonly money: MoneyStore,
    private readonly now: () => number,
    private readonly log?: Logger,
  ) {}

  private async held(id: string, owner: string): Promise<RecRecord> {
    const r = await this.recs.get(id);
    // Another holder's certificate answers as an unknown one for actions only the holder may take.
    if (!r || r.owner !== owner) throw new DomainError('unknown_rec', `certificate ${id} is not held by ${owner}`, 404);
    return r;
  }

  async putForSale(id: string, owner: string, price: Minor, currency: string): Promise<RecRecord> {
    if (!(CURRENCIES as readonly string[]).includes(currency)) throw new DomainError('unsupported_currency', `currency must be one of ${CURRENCIES.join(', ')}`, 400);
    if (price <= 0n || price > 10n ** 12n) throw new DomainError('bad_price', 'the price per kWh must be positive', 400);
    const r = await this.held(id, owner);
    const ok = await this.money.transaction((trx) => this.recs.putForSale(trx, id, owner, price, currency));
    if (!ok) throw new DomainError('rec_not_available', `certificate ${id} is ${r.status}: only an active or bought one can be put up for sale`, 409);
    return (await this.recs.get(id))!;
  }

  async withdraw(id: string, owner: string): Promise<RecRecord> {
    const r = await this.held(id, owner);
    const ok = await this.money.transaction((trx) => this.recs.withdraw(trx, id, owner));
    if (!ok) throw new DomainError('rec_not_for_sale', `certificate ${id} is ${r.status}, not for sale`, 409);
    return (await this.recs.get(id))!;
  }

  /** Buys a listed certificate: its price per kWh × volume (rounded half up) from buyer to seller. */
  async purchase(id: string, buyer: string): Promise<{ rec: RecRecord; paid: Minor; currency: Currency }> {
    const r = await this.recs.get(id);
    if (!r || r.status !== 'for_sale' || !r.listing) throw new DomainError('rec_not_for_sale', `certificate ${id} is not for sale`, 409);
    if (r.owner === buyer) throw new DomainError('own_rec', 'a certificate cannot be bought by its holder', 409);
    const currency = r.listing.currency as Currency;
    const paid = valueOf(r.listing.price, r.volumeWh, 'half-up');
    try {
      await this.money.transaction(async (trx) => {
        if (!(await this.recs.sell(trx, id, r.owner, buyer))) throw new DomainError('rec_not_for_sale', `certificate ${id} was sold or withdrawn meanwhile`, 409);
        if (paid > 0n) await this.money.apply(trx, [move('rec_payment', { kind: 'rec', id }, ownerAccount(buyer, currency), ownerAccount(r.owner, currency), currency, paid, `${r.volumeWh} Wh`)], this.now());
      });
    } catch (e) {
      if (e instanceof InsufficientFunds) throw new DomainError('insufficient_credits', `${buyer} holds ${e.balance} minor units of ${currency}, ${paid} needed`, 422);
      throw e;
    }
    this.log?.info({ event: 'RecSold', rec: id, seller: r.owner, buyer, wh: r.volumeWh, paid: paid.toString(), currency }, 'certificate sold');
    return { rec: (await this.recs.get(id))!, paid, currency };
  }

  /** Retires a held certificate, or `volumeWh` of it (the retired part split off as a new certificate). */
  async retire(id: string, owner: string, reason: string, beneficiary: string, volumeWh?: number): Promise<RecRecord> {
    const r = await this.held(id, owner);
    const at = this.now();
    const part = volumeWh ?? r.volumeWh;
    if (!Number.isSafeInteger(part) || part <= 0 || part > r.volumeWh) throw new DomainError('bad_volume', `volumeWh must be a whole number from 1 to ${r.volumeWh}`, 400);
    if (part === r.volumeWh) {
      const ok = await this.money.transaction((trx) => this.recs.retire(trx, id, owner, at, reason, beneficiary));
      if (!ok) throw new DomainError('rec_not_available', `certificate ${id} is ${r.status}: only an active or bought one can be retired`, 409);
      this.log?.info({ event: 'RecRetired', rec: id, owner, wh: part, beneficiary }, 'certificate retired');
      return (await this.recs.get(id))!;
    }
    const split: RecRecord = { ...r, id: `rec_${randomBytes(9).toString('base64url')}`, volumeWh: part, status: 'retired', parent: id, listing: null, retirement: { atMs: at, reason, beneficiary } };
    await this.money.transaction(async (trx) => {
      if (!(await this.recs.shrink(trx, id, owner, r.volumeWh, r.volumeWh - part))) {
        throw new DomainError('rec_not_available', `certificate ${id} changed meanwhile or is ${r.status}: only an active or bought one can be retired`, 409);
      }
      await this.recs.insert(trx, split);
    });
    this.log?.info({ event: 'RecRetired', rec: split.id, parent: id, owner, wh: part, beneficiary }, 'part of a certificate retired');
    return split;
  }
}

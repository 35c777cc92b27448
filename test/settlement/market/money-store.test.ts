import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InsufficientFunds, UnbalancedTransfer, move, ownerAccount, systemAccount, type Transfer } from '../../../settlement/market/accounts.ts';
import type { Currency } from '../../../settlement/market/types.ts';
import type { AccountId } from '../../../settlement/registry/registry.ts';
import { MoneyStore } from '../../../settlement/store/money-store.ts';
import { engines, type OpenedLedger } from '../../support/ledgers.ts';

/** The money ledger's contract, on each engine: balanced transfers, no negative owner balances, zero sums. */

const OWNERS = ['alice', 'bob', 'carol'] as const;
const ref = { kind: 'admin' as const, id: 'test' };

for (const engine of engines) {
  describe.skipIf(engine.skip)(`money ledger on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let money: MoneyStore;
    beforeEach(async () => {
      opened = await engine.open();
      for (const id of OWNERS) await opened.ledger.putAccount({ id: id as AccountId, name: id, createdAtMs: 1 });
      money = new MoneyStore(opened.ledger.db, opened.ledger.engine);
    });
    afterEach(() => opened.cleanup());

    const deposit = (owner: string, amount: bigint, currency: Currency = 'THB'): Transfer =>
      move('deposit', ref, systemAccount('issuance', currency), ownerAccount(owner, currency), currency, amount);

    it('moves money between accounts and keeps every posting with its reason and reference', async () => {
      await money.transaction((trx) => money.apply(trx, [deposit('alice', 10_000n)], 1000));
      const pay = move('trade_payment', { kind: 'trade', id: 't1' }, ownerAccount('alice', 'THB'), ownerAccount('bob', 'THB'), 'THB', 2_501n, 'memo');
      await money.transaction((trx) => money.apply(trx, [pay], 2000));
      expect(await money.balance(ownerAccount('alice', 'THB'))).toBe(7_499n);
      expect(await money.balance(ownerAccount('bob', 'THB'))).toBe(2_501n);
      expect(await money.balance(systemAccount('issuance', 'THB'))).toBe(-10_000n);
      const rows = await money.postings({ ref: { kind: 'trade', id: 't1' } });
      expect(rows.map((r) => [r.account, r.amount, r.reason, r.memo, r.atMs])).toEqual([
        ['alice/THB', -2_501n, 'trade_payment', 'memo', 2000],
        ['bob/THB', 2_501n, 'trade_payment', 'memo', 2000],
      ]);
      expect(await money.check()).toEqual([]);
    });

    it('refuses a transfer that would overdraw an owner and stores nothing of the batch', async () => {
      await money.transaction((trx) => money.apply(trx, [deposit('alice', 100n)], 1));
      const batch = [deposit('bob', 50n), move('trade_payment', ref, ownerAccount('alice', 'THB'), ownerAccount('bob', 'THB'), 'THB', 101n)];
      await expect(money.transaction((trx) => money.apply(trx, batch, 2))).rejects.toBeInstanceOf(InsufficientFunds);
      expect(await money.balance(ownerAccount('bob', 'THB'))).toBe(0n);
      expect(await money.balance(ownerAccount('alice', 'THB'))).toBe(100n);
      expect((await money.postings({})).length).toBe(2);
    });

    it('refuses unbalanced and mixed-currency transfers', async () => {
      const bad: Transfer = { reason: 'deposit', ref, memo: '', postings: [
        { account: systemAccount('issuance', 'THB'), currency: 'THB', amount: -5n },
        { account: ownerAccount('alice', 'THB'), currency: 'THB', amount: 4n },
      ] };
      await expect(money.transaction((trx) => money.apply(trx, [bad], 1))).rejects.toBeInstanceOf(UnbalancedTransfer);
      const wrongBook: Transfer = { reason: 'deposit', ref, memo: '', postings: [
        { account: systemAccount('issuance', 'THB'), currency: 'USD', amount: -5n },
        { account: ownerAccount('alice', 'USD'), currency: 'USD', amount: 5n },
      ] };
      await expect(money.transaction((trx) => money.apply(trx, [wrongBook], 1))).rejects.toThrow(/does not hold USD/);
    });

    it('keeps amounts beyond 2^53 exact', async () => {
      const big = 2n ** 70n + 1n;
      await money.transaction((trx) => money.apply(trx, [deposit('carol', big, 'EUR')], 1));
      expect(await money.balance(ownerAccount('carol', 'EUR'))).toBe(big);
      expect(await money.check()).toEqual([]);
    });

    it('property: any sequence of operations keeps each currency summing to zero and owners non-negative', async () => {
      const currency = fc.constantFrom<Currency>('THB', 'USD', 'EUR');
      const owner = fc.constantFrom(...OWNERS);
      const op = fc.oneof(
        fc.record({ k: fc.constant('deposit' as const), owner, currency, amount: fc.bigInt(1n, 10n ** 12n) }),
        fc.record({ k: fc.constant('pay' as const), from: owner, to: owner, currency, amount: fc.bigInt(1n, 10n ** 12n) }),
        fc.record({ k: fc.constant('hold' as const), owner, currency, amount: fc.bigInt(1n, 10n ** 12n) }),
        fc.record({ k: fc.constant('release' as const), owner, currency, amount: fc.bigInt(1n, 10n ** 12n) }),
      );
      // The ledger lives across runs, so the model of its balances does too.
      const model = new Map<string, bigint>();
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
          for (const o of ops) {
            let t: Transfer;
            if (o.k === 'deposit') t = deposit(o.owner, o.amount, o.currency);
            else if (o.k === 'pay') {
              if (o.from === o.to) continue;
              t = move('trade_payment', ref, ownerAccount(o.from, o.currency), ownerAccount(o.to, o.currency), o.currency, o.amount);
            } else if (o.k === 'hold') t = move('escrow_hold', ref, ownerAccount(o.owner, o.currency), systemAccount('escrow', o.currency), o.currency, o.amount);
            else t = move('escrow_release', ref, systemAccount('escrow', o.currency), ownerAccount(o.owner, o.currency), o.currency, o.amount);
            const next = new Map(model);
            for (const p of t.postings) next.set(p.account, (next.get(p.account) ?? 0n) + p.amount);
            const ok = [...next].every(([a, b]) => b >= 0n || a.startsWith('system:issuance'));
            const applied = await money.transaction((trx) => money.apply(trx, [t], 1)).then(
              () => true,
              (e: unknown) => {
                if (!(e instanceof InsufficientFunds)) throw e;
                return false;
              },
            );
            expect(applied).toBe(ok);
            if (applied) for (const [a, b] of next) model.set(a, b);
          }
          expect(await money.check()).toEqual([]);
          for (const b of await money.balances()) expect(b.balance).toBe(model.get(b.account) ?? 0n);
        }),
        { numRuns: engine.name === 'postgres' ? 15 : 40 },
      );
    });
  });
}

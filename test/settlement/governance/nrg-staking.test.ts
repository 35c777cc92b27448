import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Staking } from '../../../settlement/governance/governance.ts';
import { multiplierQuarters, votingPower } from '../../../settlement/governance/staking.ts';
import { move, ownerAccount, systemAccount } from '../../../settlement/market/accounts.ts';
import { NRG } from '../../../settlement/market/types.ts';
import type { AccountId } from '../../../settlement/registry/registry.ts';
import { MoneyStore } from '../../../settlement/store/money-store.ts';
import { NRG_UNIT, NrgToken } from '../../../settlement/tokens/nrg.ts';
import { engines, type OpenedLedger } from '../../support/ledgers.ts';

/**
 * The NRG token and staking on each engine: the supply is minted once, balances never go
 * negative and every account but issuance always sums to the total supply (1e27 base units,
 * past 64 bits); stakes lock tokens for voting power and return them after the lock.
 */
const SUPPLY = { totalSupply: 1_000_000_000n * NRG_UNIT, incentivePool: 100_000_000n * NRG_UNIT };
const RULES = { stakeMin: 100n * NRG_UNIT, voteThreshold: 1000n * NRG_UNIT };
const DAY = 86_400_000;
const STAKERS = ['ann', 'ben', 'cai'] as const;

describe('voting power', () => {
  it('multiplies by the lock tiers: ≤30 d 1.0, ≤90 d 1.25, ≤180 d 1.5, ≤365 d 2.0, longer 2.5', () => {
    expect([0, 30, 31, 90, 91, 180, 181, 365, 366, 1461].map((d) => Number(multiplierQuarters(d)) / 4)).toEqual([1, 1, 1.25, 1.25, 1.5, 1.5, 2, 2, 2.5, 2.5]);
    expect(votingPower(100n * NRG_UNIT, 90)).toBe(125n * NRG_UNIT);
    expect(() => multiplierQuarters(1462)).toThrow(/0 to 1461/);
    expect(() => multiplierQuarters(-1)).toThrow();
  });
});

for (const engine of engines) {
  describe.skipIf(engine.skip)(`NRG and staking on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let money: MoneyStore;
    let nrg: NrgToken;
    let staking: Staking;
    let now = Date.parse('2026-12-01T00:00:00Z');
    beforeEach(async () => {
      opened = await engine.open();
      for (const id of STAKERS) await opened.ledger.putAccount({ id: id as AccountId, name: id, createdAtMs: 1 });
      money = new MoneyStore(opened.ledger.db, opened.ledger.engine);
      nrg = new NrgToken(money, SUPPLY, () => now);
      staking = new Staking(opened.ledger.db, money, RULES, () => now);
    });
    afterEach(() => opened.cleanup());

    it('mints the supply once, also when two workers start at once', async () => {
      const other = engine.name === 'postgres' ? new NrgToken(new MoneyStore((await opened.reopen()).db, 'postgres'), SUPPLY, () => now) : nrg;
      const minted = await Promise.all([nrg.genesis(), other.genesis(), nrg.genesis()]);
      expect(minted.filter(Boolean).length).toBe(1);
      expect(await money.balance(systemAccount('treasury', NRG))).toBe(900_000_000n * NRG_UNIT);
      expect(await money.balance(systemAccount('incentives', NRG))).toBe(100_000_000n * NRG_UNIT);
      expect(await nrg.checkSupply()).toEqual([]);
      expect(await money.check()).toEqual([]);
    });

    it('stakes for voting power, refuses below the minimum or beyond holdings, returns tokens only after the lock', async () => {
      await nrg.genesis();
      await nrg.grant('ann', 500n * NRG_UNIT);
      await expect(staking.stake('ann', 99n * NRG_UNIT, 30)).rejects.toMatchObject({ code: 'below_stake_min' });
      await expect(staking.stake('ann', 501n * NRG_UNIT, 30)).rejects.toMatchObject({ code: 'insufficient_tokens' });
      await expect(staking.stake('ann', 100n * NRG_UNIT, 1462)).rejects.toMatchObject({ code: 'bad_lock' });
      const s = await staking.stake('ann', 400n * NRG_UNIT, 180);
      expect(s.votingPower).toBe(600n * NRG_UNIT);
      expect(await staking.votingPower('ann')).toBe(600n * NRG_UNIT);
      expect(await nrg.balance('ann')).toBe(100n * NRG_UNIT);
      await expect(staking.unstake('ann', s.id)).rejects.toMatchObject({ code: 'stake_locked' });
      await expect(staking.unstake('ben', s.id)).rejects.toMatchObject({ code: 'unknown_stake' });
      now += 180 * DAY;
      await staking.unstake('ann', s.id);
      await expect(staking.unstake('ann', s.id)).rejects.toMatchObject({ code: 'already_unstaked' });
      expect(await nrg.balance('ann')).toBe(500n * NRG_UNIT);
      expect(await staking.votingPower('ann')).toBe(0n);
      expect(await nrg.checkSupply()).toEqual([]);
    });

    it('property: grants, transfers, stakes and unstakes keep the supply whole and no balance negative', async () => {
      await nrg.genesis();
      const who = fc.constantFrom(...STAKERS);
      const units = fc.bigInt(1n, 2_000n).map((n) => n * NRG_UNIT + 123_456_789n); // odd base units too
      const op = fc.oneof(
        fc.record({ k: fc.constant('grant' as const), who, amount: units }),
        fc.record({ k: fc.constant('pay' as const), from: who, to: who, amount: units }),
        fc.record({ k: fc.constant('stake' as const), who, amount: units, days: fc.integer({ min: 0, max: 1461 }) }),
        fc.record({ k: fc.constant('unstake' as const), who, later: fc.integer({ min: 0, max: 1500 }) }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
          for (const o of ops) {
            const refused = (e: unknown) => {
              if (!(e instanceof Error) || !/insufficient|below_stake_min|stake_locked|InsufficientFunds/.test(`${(e as { code?: string }).code ?? ''} ${e.name}`)) throw e;
            };
            if (o.k === 'grant') await nrg.grant(o.who, o.amount).catch(refused);
            else if (o.k === 'pay' && o.from !== o.to) {
              await money.transaction((trx) => money.apply(trx, [move('grant', { kind: 'admin', id: 'p' }, ownerAccount(o.from, NRG), ownerAccount(o.to, NRG), NRG, o.amount)], now)).catch(refused);
            } else if (o.k === 'stake') await staking.stake(o.who, o.amount, o.days).catch(refused);
            else if (o.k === 'unstake') {
              now += o.later * DAY;
              const [s] = await staking.stakes.of(o.who, true);
              if (s) await staking.unstake(o.who, s.id).catch(refused);
            }
          }
          expect(await nrg.checkSupply()).toEqual([]);
          expect(await money.check()).toEqual([]);
          // Staked tokens are exactly what active stakes hold.
          const active = (await Promise.all(STAKERS.map((s) => staking.stakes.of(s, true)))).flat().reduce((a, s) => a + s.amount, 0n);
          expect(await money.balance(systemAccount('staking', NRG))).toBe(active);
        }),
        { numRuns: engine.name === 'postgres' ? 10 : 30 },
      );
    });
  });
}

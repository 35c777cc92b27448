import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultSettlementConfig } from '../../../settlement/config.ts';
import { Staking } from '../../../settlement/governance/governance.ts';
import { outcome, withChanges } from '../../../settlement/governance/proposals.ts';
import { MarketParameters, Voting } from '../../../settlement/governance/voting.ts';
import { MarketService } from '../../../settlement/market/market.ts';
import type { AccountId, MarketId } from '../../../settlement/registry/registry.ts';
import { GovernanceStore } from '../../../settlement/store/governance-store.ts';
import { MoneyStore } from '../../../settlement/store/money-store.ts';
import { NRG_UNIT, NrgToken } from '../../../settlement/tokens/nrg.ts';
import { engines, type OpenedLedger } from '../../support/ledgers.ts';

const cfg = defaultSettlementConfig();
const MARKET = cfg.markets[0]!;
const DAY = 86_400_000;
const VOTERS = ['ann', 'ben', 'cai', 'dee'] as const;

describe('tally', () => {
  const n = (x: number) => BigInt(x) * NRG_UNIT;
  it('needs half of all voting power cast (abstain counts) and 60 % yes among yes and no', () => {
    expect(outcome({ yes: n(60), no: n(40), abstain: n(0), total: n(200) })).toEqual({ status: 'passed', quorum: true, approval: true });
    expect(outcome({ yes: n(59), no: n(41), abstain: n(0), total: n(200) }).status).toBe('rejected');
    expect(outcome({ yes: n(60), no: n(40), abstain: n(0), total: n(201) })).toMatchObject({ status: 'rejected', quorum: false });
    expect(outcome({ yes: n(30), no: n(20), abstain: n(50), total: n(200) })).toMatchObject({ status: 'passed', quorum: true });
    expect(outcome({ yes: n(0), no: n(0), abstain: n(100), total: n(100) })).toMatchObject({ status: 'rejected', approval: false });
    expect(outcome({ yes: 0n, no: 0n, abstain: 0n, total: 0n }).status).toBe('rejected');
  });

  it('applies executed changes in order over the configured rules', () => {
    const r = withChanges(MARKET.rules, [
      { parameter: 'p_balance', value: '5.00' },
      { parameter: 'k', value: '2' },
      { parameter: 'p_balance', value: '4.50' },
      { parameter: 'from_a_newer_release', value: 'x' },
    ]);
    expect(r.pricing).toMatchObject({ pBalance: 450n, pCon: 200n, k: 2 });
  });
});

for (const engine of engines) {
  describe.skipIf(engine.skip)(`proposals and votes on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let now = Date.parse('2026-12-01T03:00:00Z');
    let voting: Voting;
    let staking: Staking;
    let market: MarketService;
    let parameters: MarketParameters;
    beforeEach(async () => {
      opened = await engine.open();
      const { ledger } = opened;
      await ledger.putMarket({ id: MARKET.id as MarketId, name: MARKET.name, timeZone: MARKET.timeZone, intervalMinutes: MARKET.intervalMinutes });
      for (const id of VOTERS) await ledger.putAccount({ id: id as AccountId, name: id, createdAtMs: 1 });
      const money = new MoneyStore(ledger.db, ledger.engine);
      const nrg = new NrgToken(money, cfg.governance.supply, () => now);
      await nrg.genesis();
      staking = new Staking(ledger.db, money, cfg.governance.rules, () => now);
      parameters = new MarketParameters(new GovernanceStore(ledger.db), (id) => (id === MARKET.id ? MARKET.rules : undefined));
      market = new MarketService(ledger, { rules: (id) => parameters.rules(id), credits: cfg.credits, now: () => now });
      voting = new Voting(ledger.db, money, staking, { rules: cfg.governance.rules, parameters, energyMinutes: () => 15, now: () => now });
      // ann 2000 NRG for a year (voting power 4000), ben 1000 NRG 30 days (1000), cai 500 (500).
      for (const [who, amount, days] of [['ann', 2000n, 365], ['ben', 1000n, 30], ['cai', 500n, 0]] as const) {
        await nrg.grant(who, amount * NRG_UNIT);
        await staking.stake(who, amount * NRG_UNIT, days);
      }
    });
    afterEach(() => opened.cleanup());

    it('a vote changes p_balance: passed after 7 days, executed 2 days later, and the next price signal follows', async () => {
      expect((await market.updatePrice(MARKET.id)).price).toBe(400n);
      await expect(voting.propose('cai', { title: 'cheaper', market: MARKET.id, parameter: 'p_balance', value: '3.00' })).rejects.toMatchObject({ code: 'below_vote_threshold' });
      await expect(voting.propose('ann', { title: 'x', market: MARKET.id, parameter: 'p_balance', value: '4.005' })).rejects.toMatchObject({ code: 'bad_value' });
      await expect(voting.propose('ann', { title: 'x', market: MARKET.id, parameter: 'auction_interval_minutes', value: '20' })).rejects.toMatchObject({ code: 'bad_value' });
      const p = await voting.propose('ann', { title: 'Balance price 4.50', market: MARKET.id, parameter: 'p_balance', value: '4.5' });
      expect(p.value).toBe('4.50');
      await voting.vote('ann', p.id, 'yes');
      await voting.vote('ben', p.id, 'no');
      await voting.vote('ben', p.id, 'abstain'); // replaces the no
      await expect(voting.vote('dee', p.id, 'yes')).rejects.toMatchObject({ code: 'no_voting_power' });
      expect((await voting.store.votes(p.id)).map((v) => [v.voter, v.choice])).toEqual([['ann', 'yes'], ['ben', 'abstain']]);

      now += 7 * DAY - 1;
      expect(await voting.runDue()).toEqual({ decided: 0, executed: 0 });
      now += 1;
      await expect(voting.vote('cai', p.id, 'no')).rejects.toMatchObject({ code: 'voting_closed' });
      expect(await voting.runDue()).toEqual({ decided: 1, executed: 0 });
      const decided = (await voting.store.get(p.id))!;
      expect(decided).toMatchObject({ status: 'passed', tally: { yes: 4000n * NRG_UNIT, no: 0n, abstain: 1000n * NRG_UNIT, total: 5500n * NRG_UNIT } });
      expect((await market.updatePrice(MARKET.id)).price).toBe(400n); // not yet executed

      now += 2 * DAY;
      expect(await voting.runDue()).toEqual({ decided: 0, executed: 1 });
      expect(await voting.runDue()).toEqual({ decided: 0, executed: 0 });
      expect((await voting.store.get(p.id))!.status).toBe('executed');
      expect((await market.updatePrice(MARKET.id)).price).toBe(450n);
    });

    it('a vote changes the market\u2019s reward rate for conservation rewards', async () => {
      const base = NRG_UNIT / 10n; // [rewards] rate 0.1
      await expect(voting.propose('ann', { title: 'x', market: MARKET.id, parameter: 'reward_rate', value: '-1' })).rejects.toMatchObject({ code: 'bad_value' });
      const p = await voting.propose('ann', { title: 'Double the reward', market: MARKET.id, parameter: 'reward_rate', value: '0.2' });
      expect(p.value).toBe('0.200000000000000000');
      await voting.vote('ann', p.id, 'yes');
      now += 9 * DAY;
      await voting.runDue();
      expect(parameters.rewardRate(MARKET.id, base)).toBe(base);
      await voting.runDue();
      expect(parameters.rewardRate(MARKET.id, base)).toBe(2n * base);
      expect(parameters.rewardRate('another_market', base)).toBe(base);
    });

    it('rejects without quorum, and allows at most five active proposals per proposer', async () => {
      const p = await voting.propose('ann', { title: 'k', market: MARKET.id, parameter: 'k', value: '2' });
      await voting.vote('cai', p.id, 'yes'); // 500 of 5500: no quorum
      for (let i = 0; i < 4; i++) await voting.propose('ann', { title: `k ${i}`, market: MARKET.id, parameter: 'k', value: '1.5' });
      await expect(voting.propose('ann', { title: 'sixth', market: MARKET.id, parameter: 'k', value: '1.5' })).rejects.toMatchObject({ code: 'too_many_active' });
      now += 7 * DAY;
      await voting.runDue();
      expect((await voting.store.get(p.id))!).toMatchObject({ status: 'rejected' });
      expect(parameters.rules(MARKET.id)!.pricing.k).toBe(1);
    });

    it('a proposal decided by two workers at once is decided and executed once', async () => {
      const p = await voting.propose('ann', { title: 'interval', market: MARKET.id, parameter: 'auction_interval_minutes', value: '60' });
      await voting.vote('ann', p.id, 'yes');
      now += 9 * DAY;
      const other = engine.name === 'postgres' ? await opened.reopen() : opened.ledger;
      const money2 = new MoneyStore(other.db, other.engine);
      const voting2 = new Voting(other.db, money2, new Staking(other.db, money2, cfg.governance.rules, () => now), {
        rules: cfg.governance.rules,
        parameters: new MarketParameters(new GovernanceStore(other.db), () => MARKET.rules),
        energyMinutes: () => 15,
        now: () => now,
      });
      const a = await Promise.all([voting.runDue(), voting2.runDue()]);
      const b = await Promise.all([voting.runDue(), voting2.runDue()]);
      const all = [...a, ...b];
      expect(all.reduce((s, r) => s + r.decided, 0)).toBe(1);
      expect(all.reduce((s, r) => s + r.executed, 0)).toBe(1);
      expect((await voting.store.changes()).length).toBe(1);
      expect(parameters.rules(MARKET.id)!.auction.intervalMinutes).toBe(60);
    });
  });
}

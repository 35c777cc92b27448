import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Staking } from '../../../settlement/governance/governance.ts';
import { ApiKeyStore } from '../../../settlement/registry/api-keys.ts';
import type { AccountId, MarketId } from '../../../settlement/registry/registry.ts';
import { defaultSettlementConfig } from '../../../settlement/config.ts';
import { MarketParameters, Voting } from '../../../settlement/governance/voting.ts';
import { GovernanceStore } from '../../../settlement/store/governance-store.ts';
import { MoneyStore } from '../../../settlement/store/money-store.ts';
import { NRG_UNIT, NrgToken } from '../../../settlement/tokens/nrg.ts';
import { engines, type OpenedLedger } from '../../support/ledgers.ts';
import { testApi } from '../../support/api.ts';

/** The NRG and staking routes on the real fastify server over each engine: who may call them, and what they answer. */
const CALLS = {
  prosumer: [
    { method: 'POST' as const, url: '/api/v1/governance/stake', payload: { amount: '150', lockDays: 90 } },
    { method: 'POST' as const, url: '/api/v1/governance/stakes/stk_nosuch/unstake', payload: {} },
    { method: 'POST' as const, url: '/api/v1/governance/proposals', payload: { title: 'Balance price', market: 'thailand_central', parameter: 'p_balance', value: '4.50' } },
    { method: 'POST' as const, url: '/api/v1/governance/vote', payload: { proposal: 'prop_nosuch', choice: 'yes' } },
  ],
  anyone: [
    { method: 'GET' as const, url: '/api/v1/governance/voting-power/ann' },
    { method: 'GET' as const, url: '/api/v1/governance/proposals' },
  ],
  admin: [{ method: 'POST' as const, url: '/api/v1/admin/nrg/grants', payload: { account: 'ann', amount: '1000' } }],
};

for (const engine of engines) {
  describe.skipIf(engine.skip)(`governance API on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let app: FastifyInstance;
    const keys = {} as Record<'admin' | 'utility' | 'ann' | 'ben', string>;
    const call = (c: { method: 'GET' | 'POST'; url: string; payload?: unknown }, key?: string) =>
      app.inject({ method: c.method, url: c.url, headers: key ? { authorization: `Bearer ${key}` } : {}, ...(c.payload === undefined ? {} : { payload: c.payload as object }) });

    beforeAll(async () => {
      opened = await engine.open();
      const { ledger } = opened;
      for (const id of ['ann', 'ben']) await ledger.putAccount({ id: id as AccountId, name: id, createdAtMs: 1 });
      const store = new ApiKeyStore(ledger.db);
      keys.admin = (await store.create('admin')).key;
      keys.utility = (await store.create('utility')).key;
      keys.ann = (await store.create('prosumer', '', 'ann')).key;
      keys.ben = (await store.create('prosumer', '', 'ben')).key;
      const money = new MoneyStore(ledger.db, ledger.engine);
      const supply = { totalSupply: 1_000_000_000n * NRG_UNIT, incentivePool: 0n };
      const nrg = new NrgToken(money, supply, Date.now, async (id) => (await ledger.getAccount(id)) !== undefined);
      await nrg.genesis();
      const staking = new Staking(ledger.db, money, { stakeMin: 100n * NRG_UNIT, voteThreshold: 1000n * NRG_UNIT }, Date.now);
      const m = defaultSettlementConfig().markets[0]!;
      await ledger.putMarket({ id: m.id as MarketId, name: m.name, timeZone: m.timeZone, intervalMinutes: m.intervalMinutes });
      const parameters = new MarketParameters(new GovernanceStore(ledger.db), () => m.rules);
      const voting = new Voting(ledger.db, money, staking, { rules: { stakeMin: 100n * NRG_UNIT, voteThreshold: 100n * NRG_UNIT }, parameters, energyMinutes: () => 15, now: Date.now });
      app = testApi(ledger, store, { governance: { staking, nrg, voting } });
      await app.ready();
    });
    afterAll(async () => {
      await app?.close();
      await opened?.cleanup();
    });

    it('401 without a key on every route; 403 for the wrong role', async () => {
      for (const c of Object.values(CALLS).flat()) expect([c.url, (await call(c)).statusCode]).toEqual([c.url, 401]);
      for (const c of CALLS.admin) for (const k of [keys.ann, keys.utility]) expect([c.url, (await call(c, k)).statusCode]).toEqual([c.url, 403]);
      for (const c of CALLS.prosumer) for (const k of [keys.admin, keys.utility]) expect([c.url, (await call(c, k)).statusCode]).toEqual([c.url, 403]);
    });

    it('grant, stake with voting power, a locked stake stays, another prosumer sees the power but not the stakes', async () => {
      const nobody = await call({ ...CALLS.admin[0]!, payload: { account: 'nobody', amount: '1' } }, keys.admin);
      expect([nobody.statusCode, nobody.json().code]).toEqual([404, 'unknown_account']);
      const granted = await call(CALLS.admin[0]!, keys.admin);
      expect([granted.statusCode, granted.json()]).toEqual([201, { account: 'ann', balance: '1000.000000000000000000' }]);
      const staked = await call(CALLS.prosumer[0]!, keys.ann);
      expect(staked.statusCode, staked.body).toBe(201);
      expect(staked.json()).toMatchObject({ staker: 'ann', amount: '150.000000000000000000', lockDays: 90, multiplier: '1.25', votingPower: '187.500000000000000000' });
      const tooSmall = await call({ ...CALLS.prosumer[0]!, payload: { amount: '99.999999999999999999', lockDays: 0 } }, keys.ann);
      expect([tooSmall.statusCode, tooSmall.json().code]).toEqual([422, 'below_stake_min']);
      const broke = await call(CALLS.prosumer[0]!, keys.ben);
      expect([broke.statusCode, broke.json().code]).toEqual([422, 'insufficient_tokens']);
      const badLock = await call({ ...CALLS.prosumer[0]!, payload: { amount: '100', lockDays: 5000 } }, keys.ann);
      expect(badLock.statusCode).toBe(400);
      const locked = await call({ method: 'POST', url: `/api/v1/governance/stakes/${staked.json().id}/unstake`, payload: {} }, keys.ann);
      expect([locked.statusCode, locked.json().code]).toEqual([409, 'stake_locked']);
      const foreign = await call({ method: 'POST', url: `/api/v1/governance/stakes/${staked.json().id}/unstake`, payload: {} }, keys.ben);
      expect(foreign.statusCode).toBe(404);
      const seenByBen = await call(CALLS.anyone[0]!, keys.ben);
      expect(seenByBen.json()).toEqual({ staker: 'ann', votingPower: '187.500000000000000000', totalVotingPower: '187.500000000000000000', stakes: [] });
      const seenByAnn = await call(CALLS.anyone[0]!, keys.ann);
      expect(seenByAnn.json().stakes).toHaveLength(1);

      // ann proposes (187.5 voting power ≥ the 100 this test sets) and votes; ben has no power.
      const proposed = await call(CALLS.prosumer[2]!, keys.ann);
      expect(proposed.statusCode, proposed.body).toBe(201);
      expect(proposed.json()).toMatchObject({ proposer: 'ann', parameter: 'p_balance', value: '4.50', status: 'active', tally: null });
      const id = proposed.json().id as string;
      const voted = await call({ method: 'POST', url: '/api/v1/governance/vote', payload: { proposal: id, choice: 'yes' } }, keys.ann);
      expect(voted.json()).toEqual({ proposal: id, voter: 'ann', choice: 'yes', votingPower: '187.500000000000000000' });
      const powerless = await call({ method: 'POST', url: '/api/v1/governance/vote', payload: { proposal: id, choice: 'no' } }, keys.ben);
      expect([powerless.statusCode, powerless.json().code]).toEqual([422, 'no_voting_power']);
      const badParam = await call({ ...CALLS.prosumer[2]!, payload: { title: 't', market: 'thailand_central', parameter: 'fee', value: '1' } }, keys.ann);
      expect(badParam.statusCode).toBe(400);
      const unknown = await call(CALLS.prosumer[3]!, keys.ann);
      expect(unknown.statusCode).toBe(404);
      const listed = await call(CALLS.anyone[1]!, keys.utility);
      expect(listed.json().map((p: { id: string }) => p.id)).toEqual([id]);
    });
  });
}

import type { FastifyInstance } from 'fastify';
import type { ApiDeps } from '../../settlement/api/server.ts';
import { defaultSettlementConfig } from '../../settlement/config.ts';
import { EventHub } from '../../settlement/events/hub.ts';
import { Staking } from '../../settlement/governance/governance.ts';
import { MarketParameters, Voting } from '../../settlement/governance/voting.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { MarketService } from '../../settlement/market/market.ts';
import { RecLifecycle } from '../../settlement/recs/lifecycle.ts';
import { RecMinter } from '../../settlement/recs/minting.ts';
import type { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import type { MarketId } from '../../settlement/registry/registry.ts';
import { GovernanceStore } from '../../settlement/store/governance-store.ts';
import { NrgToken } from '../../settlement/tokens/nrg.ts';
import { testApi } from './api.ts';
import { TEST_MARKET } from './registry.ts';

/**
 * The REST API with every optional part on — market, governance, certificates, live events —
 * over `ledger`, as settlement/main.ts wires it (the real services, the default config's rules),
 * with stored keys only.
 */
export async function fullApi(ledger: Ledger, apiKeys: ApiKeyStore, extra: Partial<ApiDeps> = {}, now: () => number = Date.now): Promise<{ app: FastifyInstance; market: MarketService }> {
  const cfg = defaultSettlementConfig();
  const m = cfg.markets.find((x) => x.id === TEST_MARKET) ?? cfg.markets[0]!;
  if (!(await ledger.getMarket(m.id))) await ledger.putMarket({ id: m.id as MarketId, name: m.name, timeZone: m.timeZone, intervalMinutes: m.intervalMinutes });
  const market = new MarketService(ledger, { rules: (id) => (id === m.id ? m.rules : undefined), credits: cfg.credits, now });
  const nrg = new NrgToken(market.money, cfg.governance.supply, now, async (id) => (await ledger.getAccount(id)) !== undefined);
  await nrg.genesis();
  const staking = new Staking(ledger.db, market.money, cfg.governance.rules, now);
  const parameters = new MarketParameters(new GovernanceStore(ledger.db), (id) => (id === m.id ? m.rules : undefined));
  const voting = new Voting(ledger.db, market.money, staking, { rules: cfg.governance.rules, parameters, energyMinutes: () => m.intervalMinutes, now });
  const minter = new RecMinter(ledger, market.money, { now, settleMs: 0, lookbackMs: 35 * 86_400_000 });
  const app = testApi(ledger, apiKeys, {
    market: { market, currencyOf: () => m.rules.currency },
    governance: { staking, nrg, voting },
    recs: { minter, lifecycle: new RecLifecycle(minter.recs, market.money, now) },
    events: { hub: new EventHub() },
    ...extra,
  });
  return { app, market };
}

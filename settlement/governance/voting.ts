import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { DomainError } from '../domain-error.ts';
import { formatAmount } from '../market/money.ts';
import type { MarketRules } from '../market/rules.ts';
import { NRG } from '../market/types.ts';
import { GovernanceStore, type ProposalRecord } from '../store/governance-store.ts';
import type { LedgerDb } from '../store/database.ts';
import type { MoneyStore } from '../store/money-store.ts';
import type { GovernanceRules, Staking } from './governance.ts';
import {
  EXECUTION_DELAY_MS,
  MAX_ACTIVE_PER_PROPOSER,
  VOTING_MS,
  canonicalValue,
  isParameter,
  outcome,
  rewardRate,
  withChanges,
  PARAMETERS,
  type Choice,
  type Tally,
} from './proposals.ts';

/**
 * A market's rules as configured, overridden by executed proposals. Read synchronously by the
 * market (pricing, auctions); `refresh()` reloads the changes (after an execution here, and at
 * every governance run, so other workers follow within one run).
 */
export class MarketParameters {
  private changes: Array<{ market: string; parameter: string; value: string }> = [];

  constructor(
    private readonly store: GovernanceStore,
    private readonly base: (market: string) => MarketRules | undefined,
  ) {}

  async refresh(): Promise<void> {
    this.changes = await this.store.changes();
  }

  rules(market: string): MarketRules | undefined {
    const base = this.base(market);
    return base && withChanges(base, this.changes.filter((c) => c.market === market));
  }

  /** The market's conservation reward rate: [rewards] rate, overridden by an executed reward_rate. */
  rewardRate(market: string, base: bigint): bigint {
    return rewardRate(base, this.changes.filter((c) => c.market === market));
  }
}

export class Voting {
  readonly store: GovernanceStore;

  constructor(
    db: LedgerDb,
    private readonly money: MoneyStore,
    private readonly staking: Staking,
    private readonly deps: {
      rules: GovernanceRules;
      parameters: MarketParameters;
      /** The market's energy interval, minutes (auction intervals must be a multiple). */
      energyMinutes: (market: string) => number | undefined;
      now: () => number;
      log?: Logger;
      /** Each decision or execution (metrics). */
      onOutcome?: (outcome: 'passed' | 'rejected' | 'executed') => void;
    },
  ) {
    this.store = new GovernanceStore(db);
  }

  async propose(proposer: string, p: { title: string; market: string; parameter: string; value: string }): Promise<ProposalRecord> {
    const rules = this.deps.parameters.rules(p.market);
    const energyMinutes = this.deps.energyMinutes(p.market);
    if (!rules || energyMinutes === undefined) throw new DomainError('unknown_market', `market ${p.market} does not exist`, 404);
    if (!isParameter(p.parameter)) throw new DomainError('bad_parameter', `parameter must be one of ${PARAMETERS.join(', ')}`, 400);
    let value: string;
    try {
      value = canonicalValue(p.parameter, p.value, rules, energyMinutes);
    } catch (e) {
      throw new DomainError('bad_value', (e as Error).message, 400);
    }
    const power = await this.staking.votingPower(proposer);
    if (power < this.deps.rules.voteThreshold) {
      throw new DomainError('below_vote_threshold', `a proposal needs ${formatAmount(this.deps.rules.voteThreshold, NRG)} voting power ([governance] vote_threshold); ${proposer} has ${formatAmount(power, NRG)}`, 422);
    }
    const now = this.deps.now();
    const rec: ProposalRecord = {
      id: `prop_${randomBytes(9).toString('base64url')}`,
      proposer,
      title: p.title,
      market: p.market,
      parameter: p.parameter,
      value,
      status: 'active',
      createdAtMs: now,
      votingEndsAtMs: now + (this.deps.rules.votingMs ?? VOTING_MS),
      executesAtMs: null,
      executedAtMs: null,
      tally: null,
    };
    await this.money.transaction(async (trx) => {
      if ((await this.store.activeCount(trx, proposer)) >= MAX_ACTIVE_PER_PROPOSER) {
        throw new DomainError('too_many_active', `a proposer may have at most ${MAX_ACTIVE_PER_PROPOSER} active proposals`, 422);
      }
      await this.store.insertProposal(trx, rec);
    });
    this.deps.log?.info({ event: 'ProposalCreated', proposal: rec.id, proposer, market: p.market, parameter: p.parameter, value }, 'proposal created');
    return rec;
  }

  /** One vote per staker and proposal, weighted by its voting power now; a new vote replaces the old until voting ends. */
  async vote(voter: string, proposalId: string, choice: Choice): Promise<{ power: bigint }> {
    const p = await this.store.get(proposalId);
    if (!p) throw new DomainError('unknown_proposal', `proposal ${proposalId} does not exist`, 404);
    const now = this.deps.now();
    if (p.status !== 'active' || now >= p.votingEndsAtMs) throw new DomainError('voting_closed', `voting on ${proposalId} ended ${new Date(p.votingEndsAtMs).toISOString()}`, 409);
    const power = await this.staking.votingPower(voter);
    if (power === 0n) throw new DomainError('no_voting_power', `${voter} has no staked voting power`, 422);
    await this.money.transaction((trx) => this.store.putVote(trx, { proposal: proposalId, voter, choice, power, atMs: now }));
    return { power };
  }

  /** Decides proposals whose voting has ended and executes passed ones whose delay is over. */
  async runDue(): Promise<{ decided: number; executed: number }> {
    const now = this.deps.now();
    const { toTally, toExecute } = await this.store.due(now);
    let decided = 0;
    let executed = 0;
    for (const id of toTally) {
      const votes = await this.store.votes(id);
      const sum = (c: Choice) => votes.filter((v) => v.choice === c).reduce((a, v) => a + v.power, 0n);
      const tally: Tally = { yes: sum('yes'), no: sum('no'), abstain: sum('abstain'), total: await this.staking.votingPower() };
      const o = outcome(tally);
      const p = (await this.store.get(id))!;
      const ok = await this.money.transaction((trx) => this.store.decide(trx, id, o.status, tally, o.status === 'passed' ? p.votingEndsAtMs + (this.deps.rules.executionDelayMs ?? EXECUTION_DELAY_MS) : null));
      if (!ok) continue;
      decided++;
      this.deps.onOutcome?.(o.status);
      this.deps.log?.info({ event: 'ProposalDecided', proposal: id, status: o.status, quorum: o.quorum, approval: o.approval, yes: tally.yes.toString(), no: tally.no.toString(), abstain: tally.abstain.toString(), total: tally.total.toString() }, `proposal ${o.status}`);
    }
    for (const id of toExecute) {
      const p = (await this.store.get(id))!;
      if (!(await this.money.transaction((trx) => this.store.execute(trx, p, now)))) continue;
      executed++;
      this.deps.onOutcome?.('executed');
      this.deps.log?.warn({ event: 'ProposalExecuted', proposal: id, market: p.market, parameter: p.parameter, value: p.value }, 'market parameter changed by vote');
    }
    await this.deps.parameters.refresh();
    return { decided, executed };
  }
}

import { formatAmount, formatPrice, parseAmount } from '../market/money.ts';
import { NRG } from '../market/types.ts';
import type { MarketRules } from '../market/rules.ts';

/**
 * Governance rules, free of storage: which market parameters a proposal may change and how
 * their values are written, how a vote is tallied, and how executed changes override a market's
 * configured rules.
 */
export const VOTING_MS = 7 * 86_400_000;
export const EXECUTION_DELAY_MS = 2 * 86_400_000;
export const MAX_ACTIVE_PER_PROPOSER = 5;

export type ProposalStatus = 'active' | 'passed' | 'rejected' | 'executed';
export type Choice = 'yes' | 'no' | 'abstain';

/** The parameters a proposal may change, as their config keys name them ([rewards] rate as reward_rate). */
export const PARAMETERS = ['p_balance', 'p_con', 'k', 'auction_interval_minutes', 'reward_rate'] as const;
export type Parameter = (typeof PARAMETERS)[number];

export const isParameter = (s: string): s is Parameter => (PARAMETERS as readonly string[]).includes(s);

/**
 * The canonical text of a new value, checked against the market's current rules:
 * p_balance and p_con are prices in the market's currency ("4.50"), k a positive decimal
 * number, auction_interval_minutes whole minutes that divide a day and are a multiple of the
 * market's energy interval, reward_rate NRG per kWh saved ("0.2", up to 18 decimals) for the
 * market's consumption meters. Throws RangeError saying what is wrong.
 */
export function canonicalValue(parameter: Parameter, value: string, rules: MarketRules, energyMinutes: number): string {
  switch (parameter) {
    case 'p_balance':
    case 'p_con': {
      const p = parseAmount(value, rules.currency);
      if (p < 0n) throw new RangeError(`${parameter} must not be negative`);
      return formatPrice(p, rules.currency);
    }
    case 'k': {
      if (!/^(0|[1-9]\d*)(\.\d{1,6})?$/.test(value) || !(Number(value) > 0) || Number(value) > 1000) throw new RangeError('k must be a decimal number above 0 and at most 1000, up to 6 decimals');
      return String(Number(value));
    }
    case 'reward_rate': {
      const r = parseAmount(value, NRG);
      if (r < 0n || r > 1000n * 10n ** 18n) throw new RangeError('reward_rate must be from 0 to 1000 NRG per kWh');
      return formatAmount(r, NRG);
    }
    case 'auction_interval_minutes': {
      const n = Number(value);
      if (!/^[1-9]\d*$/.test(value) || 1440 % n !== 0 || n % energyMinutes !== 0) {
        throw new RangeError(`auction_interval_minutes must be whole minutes dividing a day and a multiple of ${energyMinutes}`);
      }
      return String(n);
    }
  }
}

/** A market's rules with executed changes applied in order (the newest of each parameter wins). */
export function withChanges(rules: MarketRules, changes: ReadonlyArray<{ parameter: string; value: string }>): MarketRules {
  let r = rules;
  for (const c of changes) {
    if (!isParameter(c.parameter)) continue; // a parameter a newer release added: not ours to apply
    switch (c.parameter) {
      case 'p_balance':
        r = { ...r, pricing: { ...r.pricing, pBalance: parseAmount(c.value, r.currency) } };
        break;
      case 'p_con':
        r = { ...r, pricing: { ...r.pricing, pCon: parseAmount(c.value, r.currency) } };
        break;
      case 'k':
        r = { ...r, pricing: { ...r.pricing, k: Number(c.value) } };
        break;
      case 'auction_interval_minutes':
        r = { ...r, auction: { ...r.auction, intervalMinutes: Number(c.value) } };
        break;
      case 'reward_rate':
        break; // not a market rule: rewardRate() below
    }
  }
  return r;
}

export interface Tally {
  yes: bigint;
  no: bigint;
  abstain: bigint;
  /** Voting power of all active stakes when voting ended. */
  total: bigint;
}

/**
 * Passed when the votes cast (yes, no and abstain) reach half of the total voting power
 * (quorum) and yes is at least 60 % of yes + no (approval; an abstention counts toward the
 * quorum only). No voting power at all: rejected.
 */
export function outcome(t: Tally): { status: 'passed' | 'rejected'; quorum: boolean; approval: boolean } {
  const cast = t.yes + t.no + t.abstain;
  const quorum = t.total > 0n && cast * 2n >= t.total;
  const approval = t.yes + t.no > 0n && t.yes * 5n >= (t.yes + t.no) * 3n;
  return { status: quorum && approval ? 'passed' : 'rejected', quorum, approval };
}

/** The reward rate (NRG base units per kWh) after executed changes, newest last wins; `base` from [rewards] rate. */
export function rewardRate(base: bigint, changes: ReadonlyArray<{ parameter: string; value: string }>): bigint {
  let rate = base;
  for (const c of changes) if (c.parameter === 'reward_rate') rate = parseAmount(c.value, NRG);
  return rate;
}

import type { Settlement } from '../../settlement/main.ts';
import { NRG_UNIT } from '../../settlement/tokens/nrg.ts';
import type { DemoHomes } from './demo-homes.ts';

/**
 * Governance in the demo, through the REST API with the homes' own keys: each home is granted
 * NRG from the treasury (in process, as an admin's `POST /api/v1/admin/nrg/grants` would) and
 * stakes it for a year; the first home proposes to raise the market's balance price, the homes
 * vote (all yes but the last), and once the proposal is executed the next price signal follows.
 * Each step is printed once.
 */
interface ProposalJson {
  id: string;
  title: string;
  parameter: string;
  value: string;
  status: 'active' | 'passed' | 'rejected' | 'executed';
  votingEndsAt: string;
  executesAt: string | null;
  executedAt: string | null;
  tally: { yes: string; no: string; abstain: string; total: string } | null;
}

const GRANT = 2_000n * NRG_UNIT;
const at = (s: string | null) => (s ? `${s.slice(11, 16)} UTC` : '');
const STAKE = '1000';
const LOCK_DAYS = 365;

export class DemoGovernance {
  private readonly voted = new Set<string>();
  private reported = '';
  private priceShown = false;

  constructor(
    private readonly settlement: Settlement,
    private readonly homes: DemoHomes,
    private readonly market: string,
    private readonly pBalance: () => string,
    private readonly log: (line: string) => void,
  ) {}

  /** Grants and stakes once per data dir (a home with voting power has done both). */
  async start(): Promise<void> {
    for (const h of this.homes.homes) {
      const power = (await this.homes.api<{ votingPower: string }>(h.account, 'GET', `/api/v1/governance/voting-power/${h.account}`)).json.votingPower;
      if (Number(power) > 0) continue;
      await this.settlement.nrg.grant(h.account, GRANT, 'gtx demo');
      const r = await this.homes.api<{ code?: string; message?: string }>(h.account, 'POST', '/api/v1/governance/stake', { amount: STAKE, lockDays: LOCK_DAYS });
      if (r.status !== 201) this.log(`demo stake of ${h.account} refused: ${r.json.code}: ${r.json.message}`);
    }
  }

  async tick(): Promise<void> {
    const first = this.homes.homes[0]!.account;
    let [p] = (await this.homes.api<ProposalJson[]>(first, 'GET', `/api/v1/governance/proposals?market=${this.market}&limit=1`)).json;
    if (!p) {
      const value = (Number(this.pBalance()) + 0.25).toFixed(2);
      const r = await this.homes.api<ProposalJson & { message?: string }>(first, 'POST', '/api/v1/governance/proposals', {
        title: `Raise the balance price to ${value} THB/kWh`,
        market: this.market,
        parameter: 'p_balance',
        value,
      });
      if (r.status !== 201) return this.log(`demo proposal refused: ${r.json.message}`);
      p = r.json;
    }
    if (p.status === 'active') {
      for (const [n, h] of this.homes.homes.entries()) {
        if (this.voted.has(h.account)) continue;
        const choice = n === this.homes.homes.length - 1 && n > 0 ? 'no' : 'yes';
        const r = await this.homes.api(h.account, 'POST', '/api/v1/governance/vote', { proposal: p.id, choice });
        if (r.status === 200) this.voted.add(h.account);
      }
    }
    if (this.reported !== p.status) {
      this.reported = p.status;
      if (p.status === 'active') this.log(`governance: proposal ${p.id} "${p.title}": the homes vote until ${at(p.votingEndsAt)}`);
      else if (p.status === 'passed') this.log(`governance: ${p.id} passed (yes ${p.tally?.yes}, no ${p.tally?.no} of ${p.tally?.total} NRG voting power); executes at ${at(p.executesAt)}`);
      else if (p.status === 'rejected') this.log(`governance: ${p.id} was rejected`);
      else this.log(`governance: ${p.id} executed at ${at(p.executedAt)}: ${p.parameter} is now ${p.value} THB/kWh`);
    }
    if (p.status === 'executed' && !this.priceShown) {
      const { current } = (await this.homes.api<{ current: { price: string; ratio: number; computedAt: string } }>(first, 'GET', `/api/v1/markets/${this.market}/price`)).json;
      if (current.computedAt >= p.executedAt!) {
        this.priceShown = true;
        this.log(`governance: the price signal follows the vote: ${current.price} THB/kWh at ${at(current.computedAt)} (${p.parameter} ${p.value}, metered supply/demand ${current.ratio.toFixed(2)})`);
      }
    }
  }
}

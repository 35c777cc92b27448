import type { Choice, ProposalStatus, Tally } from '../governance/proposals.ts';
import type { LedgerDb, ProposalsTable } from './database.ts';
import type { Trx } from './money-store.ts';

/** Proposals, votes and executed parameter changes (migration 007), written once for both engines. */
export interface ProposalRecord {
  id: string;
  proposer: string;
  title: string;
  market: string;
  parameter: string;
  value: string;
  status: ProposalStatus;
  createdAtMs: number;
  votingEndsAtMs: number;
  executesAtMs: number | null;
  executedAtMs: number | null;
  tally: Tally | null;
}

const toProposal = (r: ProposalsTable): ProposalRecord => ({
  id: r.id,
  proposer: r.proposer,
  title: r.title,
  market: r.market,
  parameter: r.parameter,
  value: r.value,
  status: r.status,
  createdAtMs: Number(r.created_at_ms),
  votingEndsAtMs: Number(r.voting_ends_at_ms),
  executesAtMs: r.executes_at_ms === null ? null : Number(r.executes_at_ms),
  executedAtMs: r.executed_at_ms === null ? null : Number(r.executed_at_ms),
  tally:
    r.yes_power === null
      ? null
      : { yes: BigInt(r.yes_power), no: BigInt(r.no_power ?? '0'), abstain: BigInt(r.abstain_power ?? '0'), total: BigInt(r.total_power ?? '0') },
});

export class GovernanceStore {
  constructor(private readonly db: LedgerDb) {}

  async insertProposal(trx: Trx, p: ProposalRecord): Promise<void> {
    await trx
      .insertInto('proposals')
      .values({
        id: p.id,
        proposer: p.proposer,
        title: p.title,
        market: p.market,
        parameter: p.parameter,
        value: p.value,
        status: p.status,
        created_at_ms: p.createdAtMs,
        voting_ends_at_ms: p.votingEndsAtMs,
        executes_at_ms: null,
        executed_at_ms: null,
        yes_power: null,
        no_power: null,
        abstain_power: null,
        total_power: null,
      })
      .execute();
  }

  async activeCount(trx: Trx, proposer: string): Promise<number> {
    const r = await trx.selectFrom('proposals').select((eb) => eb.fn.countAll<number>().as('n')).where('proposer', '=', proposer).where('status', '=', 'active').executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  async get(id: string, db: LedgerDb | Trx = this.db): Promise<ProposalRecord | undefined> {
    const r = await db.selectFrom('proposals').selectAll().where('id', '=', id).executeTakeFirst();
    return r && toProposal(r);
  }

  async list(filter: { status?: ProposalStatus; market?: string; limit?: number }): Promise<ProposalRecord[]> {
    let q = this.db.selectFrom('proposals').selectAll().orderBy('created_at_ms', 'desc').orderBy('id');
    if (filter.status) q = q.where('status', '=', filter.status);
    if (filter.market) q = q.where('market', '=', filter.market);
    return (await q.limit(filter.limit ?? 100).execute()).map(toProposal);
  }

  /** One vote per voter and proposal: a new one replaces the old. */
  async putVote(trx: Trx, v: { proposal: string; voter: string; choice: Choice; power: bigint; atMs: number }): Promise<void> {
    await trx
      .insertInto('votes')
      .values({ proposal: v.proposal, voter: v.voter, choice: v.choice, power: v.power.toString(), voted_at_ms: v.atMs })
      .onConflict((oc) => oc.columns(['proposal', 'voter']).doUpdateSet({ choice: v.choice, power: v.power.toString(), voted_at_ms: v.atMs }))
      .execute();
  }

  async votes(proposal: string, db: LedgerDb | Trx = this.db): Promise<Array<{ voter: string; choice: Choice; power: bigint; votedAtMs: number }>> {
    const rows = await db.selectFrom('votes').selectAll().where('proposal', '=', proposal).orderBy('voter').execute();
    return rows.map((r) => ({ voter: r.voter, choice: r.choice, power: BigInt(r.power), votedAtMs: Number(r.voted_at_ms) }));
  }

  /** Active proposals whose voting has ended by `nowMs`, and passed ones due for execution. */
  async due(nowMs: number): Promise<{ toTally: string[]; toExecute: string[] }> {
    const toTally = await this.db.selectFrom('proposals').select('id').where('status', '=', 'active').where('voting_ends_at_ms', '<=', nowMs).orderBy('voting_ends_at_ms').limit(100).execute();
    const toExecute = await this.db.selectFrom('proposals').select('id').where('status', '=', 'passed').where('executes_at_ms', '<=', nowMs).orderBy('executes_at_ms').limit(100).execute();
    return { toTally: toTally.map((r) => r.id), toExecute: toExecute.map((r) => r.id) };
  }

  /** Records the tally and the decision; false when another run decided it first. */
  async decide(trx: Trx, id: string, status: 'passed' | 'rejected', t: Tally, executesAtMs: number | null): Promise<boolean> {
    const r = await trx
      .updateTable('proposals')
      .set({ status, yes_power: t.yes.toString(), no_power: t.no.toString(), abstain_power: t.abstain.toString(), total_power: t.total.toString(), executes_at_ms: executesAtMs })
      .where('id', '=', id)
      .where('status', '=', 'active')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Marks a passed proposal executed and records its change; false when already executed. */
  async execute(trx: Trx, p: ProposalRecord, atMs: number): Promise<boolean> {
    const r = await trx.updateTable('proposals').set({ status: 'executed', executed_at_ms: atMs }).where('id', '=', p.id).where('status', '=', 'passed').executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) return false;
    await trx.insertInto('parameter_changes').values({ proposal: p.id, market: p.market, parameter: p.parameter, value: p.value, effective_at_ms: atMs }).execute();
    return true;
  }

  /** Every executed change, oldest first. */
  async changes(): Promise<Array<{ market: string; parameter: string; value: string; effectiveAtMs: number; proposal: string }>> {
    const rows = await this.db.selectFrom('parameter_changes').selectAll().orderBy('effective_at_ms').orderBy('proposal').execute();
    return rows.map((r) => ({ market: r.market, parameter: r.parameter, value: r.value, effectiveAtMs: Number(r.effective_at_ms), proposal: r.proposal }));
  }
}

import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { Staking } from '../../governance/governance.ts';
import { multiplierText } from '../../governance/staking.ts';
import { DomainError } from '../../domain-error.ts';
import { formatAmount, parseAmount } from '../../market/money.ts';
import { NRG } from '../../market/types.ts';
import type { StakeRecord } from '../../store/stake-store.ts';
import type { NrgToken } from '../../tokens/nrg.ts';
import { PARAMETERS } from '../../governance/proposals.ts';
import type { Voting } from '../../governance/voting.ts';
import type { ProposalRecord } from '../../store/governance-store.ts';
import { ADMINS, ANY_KEY, OWNERS_AND_READERS } from '../auth.ts';
import { describedError, ErrorSchema } from './errors.ts';

/**
 * NRG and staking routes (docs/governance.md): a prosumer stakes and unstakes its own tokens;
 * anyone with a key reads voting power; an admin grants tokens from the treasury. NRG amounts
 * are decimal strings with up to 18 decimals ("100", "0.5").
 */
export interface GovernanceApiDeps {
  staking: Staking;
  nrg: NrgToken;
  /** Proposals and votes; absent: no proposal routes. */
  voting?: Voting;
}

const ANYONE = ANY_KEY;
const Nrg = (description: string) => Type.String({ pattern: '^(0|[1-9][0-9]*)(\\.[0-9]{1,18})?$', description, examples: ['100', '250.5'] });

const StakeJson = Type.Object({
  id: Type.String(),
  staker: Type.String(),
  amount: Type.String({ description: 'NRG' }),
  lockDays: Type.Integer(),
  multiplier: Type.String(),
  votingPower: Type.String({ description: 'NRG × multiplier' }),
  stakedAt: Type.String(),
  unlocksAt: Type.String(),
  unstakedAt: Type.Union([Type.String(), Type.Null()]),
});

function stakeJson(s: StakeRecord) {
  return {
    id: s.id,
    staker: s.staker,
    amount: formatAmount(s.amount, NRG),
    lockDays: s.lockDays,
    multiplier: multiplierText(s.lockDays),
    votingPower: formatAmount(s.votingPower, NRG),
    stakedAt: new Date(s.stakedAtMs).toISOString(),
    unlocksAt: new Date(s.unlocksAtMs).toISOString(),
    unstakedAt: s.unstakedAtMs === null ? null : new Date(s.unstakedAtMs).toISOString(),
  };
}

const fail = (e: unknown) => {
  if (e instanceof DomainError) return { status: e.status, body: { code: e.code, message: e.message } };
  if (e instanceof RangeError) return { status: 400, body: { code: 'bad_request', message: e.message } };
  throw e;
};

const ProposalJson = Type.Object({
  id: Type.String(),
  proposer: Type.String(),
  title: Type.String(),
  market: Type.String(),
  parameter: Type.String(),
  value: Type.String(),
  status: Type.Union(['active', 'passed', 'rejected', 'executed'].map((x) => Type.Literal(x))),
  createdAt: Type.String(),
  votingEndsAt: Type.String(),
  executesAt: Type.Union([Type.String(), Type.Null()]),
  executedAt: Type.Union([Type.String(), Type.Null()]),
  tally: Type.Union([Type.Object({ yes: Type.String(), no: Type.String(), abstain: Type.String(), total: Type.String() }), Type.Null()]),
});

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function proposalJson(p: ProposalRecord) {
  return {
    id: p.id,
    proposer: p.proposer,
    title: p.title,
    market: p.market,
    parameter: p.parameter,
    value: p.value,
    status: p.status,
    createdAt: iso(p.createdAtMs)!,
    votingEndsAt: iso(p.votingEndsAtMs)!,
    executesAt: iso(p.executesAtMs),
    executedAt: iso(p.executedAtMs),
    tally: p.tally && { yes: formatAmount(p.tally.yes, NRG), no: formatAmount(p.tally.no, NRG), abstain: formatAmount(p.tally.abstain, NRG), total: formatAmount(p.tally.total, NRG) },
  };
}

export const governanceRoutes: FastifyPluginAsync<GovernanceApiDeps> = async (app, { staking, nrg, voting }) => {
  if (voting) {
    const ProposalBody = Type.Object(
      {
        title: Type.String({ minLength: 1, maxLength: 200 }),
        market: Type.String({ minLength: 1, maxLength: 64 }),
        parameter: Type.Union(PARAMETERS.map((x) => Type.Literal(x))),
        value: Type.String({ minLength: 1, maxLength: 32, description: 'p_balance / p_con: a price like "4.50"; k: a number like "1.5"; auction_interval_minutes: "60"' }),
      },
      { additionalProperties: false },
    );
    app.post<{ Body: Static<typeof ProposalBody> }>(
      '/governance/proposals',
      {
        config: { roles: ['prosumer'] },
        schema: {
          body: ProposalBody,
          response: { 201: ProposalJson, 400: ErrorSchema, 404: ErrorSchema, 422: describedError('below_vote_threshold, too_many_active (5 per proposer).') },
        },
      },
      async (req, reply) => {
        const p = req.principal!;
        if (p.role !== 'prosumer') return reply.code(403).send({ code: 'forbidden', message: 'proposals are made with a prosumer key' });
        try {
          return reply.code(201).send(proposalJson(await voting.propose(p.account, req.body)));
        } catch (e) {
          const f = fail(e);
          return reply.code(f.status).send(f.body);
        }
      },
    );

    app.get<{ Querystring: { status?: ProposalRecord['status']; market?: string; limit?: number } }>(
      '/governance/proposals',
      {
        config: { roles: ANYONE },
        schema: {
          querystring: Type.Object(
            {
              status: Type.Optional(Type.Union(['active', 'passed', 'rejected', 'executed'].map((x) => Type.Literal(x)))),
              market: Type.Optional(Type.String()),
              limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
            },
            { additionalProperties: false },
          ),
          response: { 200: Type.Array(ProposalJson, { description: 'newest first' }) },
        },
      },
      async (req) => (await voting.store.list(req.query)).map(proposalJson),
    );

    const VoteBody = Type.Object(
      { proposal: Type.String({ minLength: 1, maxLength: 64 }), choice: Type.Union(['yes', 'no', 'abstain'].map((x) => Type.Literal(x))) },
      { additionalProperties: false },
    );
    app.post<{ Body: Static<typeof VoteBody> }>(
      '/governance/vote',
      {
        config: { roles: ['prosumer'] },
        schema: {
          body: VoteBody,
          response: {
            200: Type.Object({ proposal: Type.String(), voter: Type.String(), choice: Type.String(), votingPower: Type.String() }),
            404: ErrorSchema,
            409: describedError('voting_closed'),
            422: describedError('no_voting_power'),
          },
        },
      },
      async (req, reply) => {
        const p = req.principal!;
        if (p.role !== 'prosumer') return reply.code(403).send({ code: 'forbidden', message: 'votes are cast with a prosumer key' });
        try {
          const { power } = await voting.vote(p.account, req.body.proposal, req.body.choice as 'yes' | 'no' | 'abstain');
          return { proposal: req.body.proposal, voter: p.account, choice: req.body.choice, votingPower: formatAmount(power, NRG) };
        } catch (e) {
          const f = fail(e);
          return reply.code(f.status).send(f.body);
        }
      },
    );
  }

  const StakeBody = Type.Object(
    { amount: Nrg('NRG to stake, at least [governance] stake_min_amount'), lockDays: Type.Integer({ minimum: 0, maximum: 1461, description: '0 to 4 years' }) },
    { additionalProperties: false },
  );
  app.post<{ Body: Static<typeof StakeBody> }>(
    '/governance/stake',
    {
      config: { roles: ['prosumer'] },
      schema: {
        body: StakeBody,
        response: { 201: StakeJson, 400: ErrorSchema, 422: describedError('below_stake_min, insufficient_tokens.') },
      },
    },
    async (req, reply) => {
      const p = req.principal!;
      if (p.role !== 'prosumer') return reply.code(403).send({ code: 'forbidden', message: 'stakes are made with a prosumer key' });
      try {
        const s = await staking.stake(p.account, parseAmount(req.body.amount, NRG), req.body.lockDays);
        return reply.code(201).send(stakeJson(s));
      } catch (e) {
        const f = fail(e);
        return reply.code(f.status).send(f.body);
      }
    },
  );

  app.post<{ Params: { id: string } }>(
    '/governance/stakes/:id/unstake',
    {
      config: { roles: ['prosumer'] },
      schema: {
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 200: StakeJson, 404: describedError('unknown_stake'), 409: describedError('stake_locked (until unlocksAt), already_unstaked') },
      },
    },
    async (req, reply) => {
      const p = req.principal!;
      if (p.role !== 'prosumer') return reply.code(403).send({ code: 'forbidden', message: 'stakes are returned with a prosumer key' });
      try {
        return stakeJson(await staking.unstake(p.account, req.params.id));
      } catch (e) {
        const f = fail(e);
        return reply.code(f.status).send(f.body);
      }
    },
  );

  app.get<{ Params: { staker: string } }>(
    '/governance/voting-power/:staker',
    {
      // Not installers: non-prosumer keys see every staker's stakes here.
      config: { roles: OWNERS_AND_READERS },
      schema: {
        params: Type.Object({ staker: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 200: Type.Object({ staker: Type.String(), votingPower: Type.String(), totalVotingPower: Type.String(), stakes: Type.Array(StakeJson) }) },
      },
    },
    async (req) => {
      const p = req.principal!;
      // A prosumer's stakes are its own business; the power itself is public to key holders, as in a vote.
      const own = p.role !== 'prosumer' || p.account === req.params.staker;
      const [power, total] = await Promise.all([staking.votingPower(req.params.staker), staking.votingPower()]);
      return {
        staker: req.params.staker,
        votingPower: formatAmount(power, NRG),
        totalVotingPower: formatAmount(total, NRG),
        stakes: own ? (await staking.stakes.of(req.params.staker)).map(stakeJson) : [],
      };
    },
  );

  const GrantBody = Type.Object({ account: Type.String({ minLength: 1, maxLength: 64 }), amount: Nrg('NRG from the treasury'), memo: Type.Optional(Type.String({ maxLength: 200 })) }, { additionalProperties: false });
  app.post<{ Body: Static<typeof GrantBody> }>(
    '/admin/nrg/grants',
    {
      config: { roles: ADMINS },
      schema: {
        body: GrantBody,
        response: { 201: Type.Object({ account: Type.String(), balance: Type.String({ description: 'NRG' }) }), 400: ErrorSchema, 404: ErrorSchema, 422: ErrorSchema },
      },
    },
    async (req, reply) => {
      try {
        const balance = await nrg.grant(req.body.account, parseAmount(req.body.amount, NRG), req.body.memo ?? '');
        req.log.warn({ account: req.body.account, amount: req.body.amount, key: req.principal?.keyId }, 'NRG granted from the treasury');
        return reply.code(201).send({ account: req.body.account, balance: formatAmount(balance, NRG) });
      } catch (e) {
        const f = fail(e);
        return reply.code(f.status).send(f.body);
      }
    },
  );
};

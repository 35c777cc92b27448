import { createHash, randomBytes } from 'node:crypto';
import {
  RESERVED_ID_PREFIX,
  isReservedId,
  gatewayId as toGatewayId,
  loadPublicKey,
  meterId as toMeterId,
  type EnrollmentRequest,
  type EnrollmentResponse,
} from '../../protocol/index.ts';
import { hashSecret, newSecret } from '../broker/credentials.ts';
import { DomainError } from '../domain-error.ts';
import type { AccountId, MarketId, RegistryStore } from './registry.ts';
import type { LedgerDb } from '../store/database.ts';
import { HandoverStore } from './handovers.ts';

/** Enrollment failures a caller can act on; `status` is the HTTP status the API answers with. */
export class EnrollmentError extends DomainError {
  override readonly name = 'EnrollmentError';
}

/** A registry account id (the owner of meters, orders and balances). */
export const ACCOUNT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

// Crockford base32: no I, L, O, U, so codes survive being read aloud or typed from paper.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A one-time installer code like GTX-7KQ2-M9XD-4TRB (60 random bits). */
export function newInstallerCode(): string {
  const bytes = randomBytes(12);
  const chars = [...bytes].map((b) => ALPHABET[b & 31]);
  return `GTX-${chars.slice(0, 4).join('')}-${chars.slice(4, 8).join('')}-${chars.slice(8, 12).join('')}`;
}

export function codeHash(code: string): string {
  return createHash('sha256').update(code.trim().toUpperCase()).digest('hex');
}

export class Enrollment {
  private readonly handovers: HandoverStore;

  constructor(
    private readonly store: RegistryStore & { readonly db: LedgerDb },
    private readonly opts: {
      now: () => number;
      mqttUrl: () => string;
      /** Told after an enrollment commits, so caches of gateways and meters can drop stale entries. */
      onEnrolled?: (gateway: string, meters: string[], mqttSecret: string) => void;
    },
  ) {
    this.handovers = new HandoverStore(store.db);
  }

  /** Issues a one-time code for installing a gateway for `owner` in `market`. */
  async issueCode(input: { market: string; owner: string; ttlMs: number }): Promise<{ code: string; expiresAtMs: number }> {
    const market = await this.store.getMarket(input.market);
    if (!market) throw new EnrollmentError('unknown_market', `market ${input.market} does not exist`, 404);
    // Account ids name money accounts ("<owner>/THB") beside system ones ("system:escrow/THB"):
    // the pattern keeps ':' and '/' out, so no owner can ever be a system account.
    if (!ACCOUNT_ID.test(input.owner)) {
      throw new EnrollmentError('bad_owner', `owner "${input.owner}" must be 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit`, 400);
    }
    if (!(await this.store.getAccount(input.owner))) {
      await this.store.putAccount({ id: input.owner as AccountId, name: input.owner, createdAtMs: this.opts.now() });
    }
    const code = newInstallerCode();
    const now = this.opts.now();
    const expiresAtMs = now + input.ttlMs;
    await this.store.putEnrollmentCode({
      codeHash: codeHash(code),
      market: market.id,
      owner: input.owner as AccountId,
      createdAtMs: now,
      expiresAtMs,
      usedAtMs: null,
      usedBy: null,
    });
    return { code, expiresAtMs };
  }

  async enroll(req: EnrollmentRequest): Promise<EnrollmentResponse> {
    try {
      loadPublicKey(req.publicKeyPem);
    } catch (e) {
      throw new EnrollmentError('bad_public_key', `publicKeyPem is not an Ed25519 SPKI PEM key: ${(e as Error).message}`, 400);
    }
    const ids = new Set<string>();
    for (const m of req.meters) {
      if (ids.has(m.id)) throw new EnrollmentError('duplicate_meter', `meter ${m.id} is listed twice`, 400);
      ids.add(m.id);
      const exports = m.role !== 'consumption';
      if (exports && !m.energySource) {
        throw new EnrollmentError('energy_source_required', `meter ${m.id} (${m.role}) needs an energySource (Solar, Wind, …)`, 400);
      }
    }
    const hash = codeHash(req.code);
    const code = await this.store.getEnrollmentCode(hash);
    if (!code) throw new EnrollmentError('code_unknown', 'installer code not recognised: check it, or ask the operator for a new one', 404);
    if (isReservedId(req.gateway)) {
      throw new EnrollmentError('reserved_id', `gateway id ${req.gateway} is reserved for the settlement itself (ids starting with ${RESERVED_ID_PREFIX}): choose another`, 400);
    }
    const now = this.opts.now();
    const secret = newSecret();
    const gateway = toGatewayId(req.gateway);
    // Meters this enrollment takes over from another (revoked) gateway: a hand-over to record.
    const previous = new Map<string, string>();
    for (const m of req.meters) {
      const rec = await this.store.getMeter(m.id);
      if (rec && rec.gateway !== gateway) previous.set(m.id, rec.gateway);
    }
    const outcome = await this.store.enroll({
      codeHash: hash,
      nowMs: now,
      gateway,
      publicKeyPem: req.publicKeyPem,
      mqttSecretHash: hashSecret(secret),
      meters: req.meters.map((m) => ({
        id: toMeterId(m.id),
        gateway,
        model: m.model,
        role: m.role,
        ratedPowerW: m.ratedPowerW,
        energySource: m.energySource ?? null,
        market: code.market as MarketId,
        owner: code.owner,
        createdAtMs: now,
      })),
    });
    if (!outcome.ok) {
      const status = ({ code_unknown: 404, code_used: 410, code_expired: 410, gateway_exists: 409, meter_taken: 409 } as const)[outcome.reason];
      throw new EnrollmentError(outcome.reason, outcome.detail, status);
    }
    const meterIds = req.meters.map((m) => m.id);
    const chainHeads = await this.handovers.chainHeads(meterIds);
    for (const [meter, oldGateway] of previous) {
      const head = chainHeads.find((h) => h.meter === meter);
      await this.handovers.record({ meter, oldGateway, newGateway: gateway, fromSeq: (head?.seq ?? 0) + 1, atMs: now });
    }
    this.opts.onEnrolled?.(gateway, meterIds, secret);
    return {
      gateway,
      market: code.market,
      owner: code.owner,
      status: 'active',
      mqtt: { url: this.opts.mqttUrl(), username: gateway, password: secret },
      meters: meterIds,
      chainHeads,
    };
  }
}

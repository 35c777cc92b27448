import type { EnergySource, GatewayId, MeterId, MeterRole } from '../../protocol/index.ts';

/** Who and what the settlement knows: markets, prosumer accounts, gateways, meters. */
export type MarketId = string & { readonly __brand: 'MarketId' };
export type AccountId = string & { readonly __brand: 'AccountId' };

export interface Market {
  id: MarketId;
  name: string;
  /** IANA zone in which delivery intervals and market hours are evaluated. */
  timeZone: string;
  intervalMinutes: number;
}

export interface Account {
  id: AccountId;
  name: string;
  createdAtMs: number;
}

export interface MeterRecord {
  id: MeterId;
  gateway: GatewayId;
  model: string;
  role: MeterRole;
  ratedPowerW: number;
  energySource: EnergySource | null;
  market: MarketId;
  owner: AccountId;
  createdAtMs: number;
}

export interface EnrollmentCodeRecord {
  /** SHA-256 hex of the code: the code itself is shown once, to the admin. */
  codeHash: string;
  market: MarketId;
  owner: AccountId;
  createdAtMs: number;
  expiresAtMs: number;
  usedAtMs: number | null;
  usedBy: GatewayId | null;
}

export type EnrollOutcome =
  | { ok: true }
  | { ok: false; reason: 'code_unknown' | 'code_used' | 'code_expired' | 'gateway_exists' | 'meter_taken'; detail: string };

export interface RegistryStore {
  putMarket(m: Market): Promise<void>;
  getMarket(id: string): Promise<Market | undefined>;
  listMarkets(): Promise<Market[]>;
  putAccount(a: Account): Promise<void>;
  getAccount(id: string): Promise<Account | undefined>;
  putEnrollmentCode(c: EnrollmentCodeRecord): Promise<void>;
  getEnrollmentCode(codeHash: string): Promise<EnrollmentCodeRecord | undefined>;
  /**
   * In one transaction: marks the code used, stores the gateway as active with its key and
   * MQTT secret hash, and its meters. Nothing is written unless all of it is.
   */
  enroll(input: {
    codeHash: string;
    nowMs: number;
    gateway: GatewayId;
    publicKeyPem: string;
    mqttSecretHash: string;
    meters: MeterRecord[];
  }): Promise<EnrollOutcome>;
  getMeter(id: string): Promise<MeterRecord | undefined>;
  listMeters(filter?: { gateway?: string; market?: string }): Promise<MeterRecord[]>;
  /** Sets a gateway's status; revocation is stamped with its time. */
  setGatewayStatus(id: string, status: 'pending' | 'active' | 'revoked', atMs: number): Promise<boolean>;
}

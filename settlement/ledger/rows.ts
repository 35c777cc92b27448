// Row shapes, row → record mappers, interval pairing and enrollment refusals shared by
// SqliteLedger and PostgresLedger: both engines use the same columns and must answer alike.
import type { EnergySource, EnvelopeId, GatewayId, MeterId, MeterRole } from '../../protocol/index.ts';
import type { GapRecord } from './plan.ts';
import type { AccountsTable, EnrollmentCodesTable, MeterGapsTable, MetersTable } from '../store/database.ts';
import type { Account, AccountId, EnrollmentCodeRecord, EnrollOutcome, Market, MarketId, MeterRecord } from '../registry/registry.ts';
import type { GatewayRecord, GatewayStatus, StoredReading } from './ledger.ts';

/** A meter_gaps row as both engines read it. */
export type GapTableRow = Omit<MeterGapsTable, 'meter'>;

export function toGapRecord(r: GapTableRow): GapRecord {
  const split =
    r.est_market !== null && r.est_interval_ms !== null && r.est_time_zone !== null
      ? { market: r.est_market, intervalMs: r.est_interval_ms, timeZone: r.est_time_zone }
      : null;
  return {
    fromSeq: r.from_seq,
    toSeq: r.to_seq,
    openedAtMs: r.opened_at_ms,
    estimate: r.estimated_at_ms === null ? null : { atMs: r.estimated_at_ms, split },
  };
}

export interface GatewayRow {
  id: string;
  public_key_pem: string;
  status: GatewayStatus;
  created_at_ms: number;
  mqtt_secret_hash: string | null;
  revoked_at_ms: number | null;
}

export interface MarketRow {
  id: string;
  name: string;
  time_zone: string;
  interval_minutes: number;
}

export type AccountRow = AccountsTable;
export type CodeRow = EnrollmentCodesTable;

export type MeterRow = Omit<MetersTable, 'role' | 'energy_source'> & { role: MeterRole; energy_source: EnergySource | null };

export function toGateway(r: GatewayRow): GatewayRecord {
  return {
    id: r.id as GatewayId,
    publicKeyPem: r.public_key_pem,
    status: r.status,
    createdAtMs: r.created_at_ms,
    mqttSecretHash: r.mqtt_secret_hash,
    revokedAtMs: r.revoked_at_ms,
  };
}

export const toMarket = (r: MarketRow): Market => ({ id: r.id as MarketId, name: r.name, timeZone: r.time_zone, intervalMinutes: r.interval_minutes });
export const toAccount = (r: AccountRow): Account => ({ id: r.id as AccountId, name: r.name, createdAtMs: r.created_at_ms });

export function toCode(r: CodeRow): EnrollmentCodeRecord {
  return {
    codeHash: r.code_hash,
    market: r.market as MarketId,
    owner: r.owner as AccountId,
    createdAtMs: r.created_at_ms,
    expiresAtMs: r.expires_at_ms,
    usedAtMs: r.used_at_ms,
    usedBy: r.used_by as GatewayId | null,
  };
}

export function toMeter(r: MeterRow): MeterRecord {
  return {
    id: r.id as MeterId,
    gateway: r.gateway as GatewayId,
    model: r.model,
    role: r.role,
    ratedPowerW: r.rated_power_w,
    energySource: r.energy_source,
    market: r.market as MarketId,
    owner: r.owner as AccountId,
    createdAtMs: r.created_at_ms,
  };
}

// Refusals of an enrollment, worded for the installer
export type Refusal = Extract<EnrollOutcome, { ok: false }>;
export const iso = (ms: number) => new Date(ms).toISOString();

export function refuseCode(code: EnrollmentCodeRecord | undefined, nowMs: number): Refusal | undefined {
  if (!code) return { ok: false, reason: 'code_unknown', detail: 'installer code not recognised: check it, or ask the operator for a new one' };
  if (code.usedAtMs !== null) {
    return {
      ok: false,
      reason: 'code_used',
      detail: `installer code was already used by gateway ${code.usedBy ?? '(unknown)'} at ${iso(code.usedAtMs)}: ask the operator for a new one`,
    };
  }
  if (nowMs >= code.expiresAtMs) {
    return { ok: false, reason: 'code_expired', detail: `installer code expired at ${iso(code.expiresAtMs)}: ask the operator for a new one` };
  }
  return undefined;
}

export function refuseGateway(gw: GatewayRecord): Refusal {
  return {
    ok: false,
    reason: 'gateway_exists',
    detail: `gateway ${gw.id} is already registered (${gw.status}): choose another gateway id, or ask the operator to remove the old registration`,
  };
}

export function refuseMeters(ids: string[], taken: Array<{ id: string; gateway: string }>): Refusal | undefined {
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice !== undefined) return { ok: false, reason: 'meter_taken', detail: `meter ${twice} is listed twice in this enrollment` };
  if (taken.length === 0) return undefined;
  const which = taken.map((t) => `meter ${t.id} is already enrolled by gateway ${t.gateway}`).join('; ');
  return { ok: false, reason: 'meter_taken', detail: `${which}: remove it from this gateway's meters, or, when this gateway replaces that one, ask the operator to revoke the old gateway first` };
}

/** The columns a ReadingRow is selected as: readings `r` joined to envelopes `e` (for the envelope id). */
export const READING_COLUMNS = [
  'r.meter',
  'r.seq',
  'e.id as envelope_id',
  'r.gateway',
  'r.ts_ms',
  'r.import_wh',
  'r.export_wh',
  'r.power_w',
  'r.voltage_mv',
  'r.current_ma',
  'r.frequency_mhz',
  'r.prev',
  'r.hash',
  'r.received_at_ms',
] as const;

export interface ReadingRow {
  meter: string;
  seq: number;
  envelope_id: string;
  gateway: string;
  ts_ms: number;
  import_wh: number;
  export_wh: number;
  power_w: number;
  voltage_mv: number | null;
  current_ma: number | null;
  frequency_mhz: number | null;
  prev: string;
  hash: string;
  received_at_ms: number;
}

export function toStoredReading(r: ReadingRow): StoredReading {
  const out: StoredReading = {
    meter: r.meter as MeterId,
    seq: r.seq,
    ts: new Date(r.ts_ms).toISOString(),
    importWh: r.import_wh,
    exportWh: r.export_wh,
    powerW: r.power_w,
    prev: r.prev,
    hash: r.hash,
    envelopeId: r.envelope_id as EnvelopeId,
    gateway: r.gateway as GatewayId,
    receivedAtMs: r.received_at_ms,
  };
  if (r.voltage_mv !== null) out.voltageMilliV = r.voltage_mv;
  if (r.current_ma !== null) out.currentMilliA = r.current_ma;
  if (r.frequency_mhz !== null) out.frequencyMilliHz = r.frequency_mhz;
  return out;
}

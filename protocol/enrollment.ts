import { Type, type Static } from '@sinclair/typebox';
import { ID_PATTERN } from './ids.ts';

/**
 * The enrollment contract: `gtx gateway enroll` POSTs an EnrollmentRequest with an installer's
 * one-time code to `/api/v1/enrollments`; settlement registers the gateway and its meters and
 * answers with the gateway's MQTT credentials (shown once, never stored in clear).
 */
export const ENROLLMENT_PATH = '/api/v1/enrollments';

export const METER_ROLES = ['consumption', 'generation', 'bidirectional'] as const;
export type MeterRole = (typeof METER_ROLES)[number];
export const ENERGY_SOURCES = ['Solar', 'Wind', 'Hydro', 'Geothermal', 'Biomass', 'Other'] as const;
export type EnergySource = (typeof ENERGY_SOURCES)[number];

const Id = Type.String({ pattern: ID_PATTERN });

export const EnrolledMeterSchema = Type.Object(
  {
    id: Id,
    model: Type.String({ minLength: 1, maxLength: 64 }),
    role: Type.Union(METER_ROLES.map((r) => Type.Literal(r))),
    ratedPowerW: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
    /** Required for generation and bidirectional meters that export; null for consumption. */
    energySource: Type.Optional(Type.Union([...ENERGY_SOURCES.map((s) => Type.Literal(s)), Type.Null()])),
  },
  { additionalProperties: false },
);
export type EnrolledMeter = Static<typeof EnrolledMeterSchema>;

export const EnrollmentRequestSchema = Type.Object(
  {
    code: Type.String({ minLength: 8, maxLength: 64 }),
    gateway: Id,
    /** Ed25519 public key, SPKI PEM. */
    publicKeyPem: Type.String({ minLength: 40, maxLength: 1000 }),
    meters: Type.Array(EnrolledMeterSchema, { minItems: 1, maxItems: 64 }),
  },
  { additionalProperties: false },
);
export type EnrollmentRequest = Static<typeof EnrollmentRequestSchema>;

export const EnrollmentResponseSchema = Type.Object({
  gateway: Type.String(),
  market: Type.String(),
  owner: Type.String(),
  status: Type.Literal('active'),
  mqtt: Type.Object({ url: Type.String(), username: Type.String(), password: Type.String() }),
  meters: Type.Array(Type.String()),
  /**
   * Where each enrolled meter's hash chain stands in the ledger: a gateway that replaces another
   * continues each chain from here (seq + 1, prev = hash) instead of starting over at seq 1.
   * Meters with no stored reading are not listed (they start at seq 1 with the genesis prev).
   */
  chainHeads: Type.Array(Type.Object({ meter: Type.String(), seq: Type.Integer({ minimum: 1 }), hash: Type.String({ pattern: '^[0-9a-f]{64}$' }) })),
});
export type EnrollmentResponse = Static<typeof EnrollmentResponseSchema>;

// A device definition describes one meter model as data: which register holds which quantity,
// how it is encoded and in which unit. Adding a meter is a new JSON or TOML file, not new code.
import { Type, type Static, type TLiteral, type TSchema, type TUnion } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { checkDefinition } from './definition-rules.ts';

/** `voltage` is phase 1 (L1-N); a three-phase meter may also map `voltageL2` and `voltageL3` (a missing phase shows). */
export const QUANTITIES = ['importEnergy', 'exportEnergy', 'power', 'voltage', 'voltageL2', 'voltageL3', 'current', 'frequency'] as const;
export const DATA_TYPES = ['float32', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64'] as const;
export const UNITS = ['kWh', 'Wh', 'kW', 'W', 'V', 'A', 'Hz'] as const;
/** Quantities a device may declare it does not measure (an inverter counts no import). */
export const UNMEASURABLE = ['importEnergy', 'exportEnergy'] as const;
/** Conventions for "no value" register contents; see codec.ts notAvailable(). */
export const NOT_AVAILABLE_CONVENTIONS = ['sunspec', 'max'] as const;
export const IDENTIFY_TYPES = ['uint16', 'uint32', 'string'] as const;

export type Quantity = (typeof QUANTITIES)[number];
export type DataType = (typeof DATA_TYPES)[number];
export type Unit = (typeof UNITS)[number];
export type FunctionCode = 3 | 4;
export type WordOrder = 'big' | 'little';
export type NotAvailableConvention = (typeof NOT_AVAILABLE_CONVENTIONS)[number];
export type IdentifyType = (typeof IDENTIFY_TYPES)[number];

/**
 * Where a scale-factor register is: an int16 power-of-ten exponent, value × 10^sf. A register
 * located by `address` names the scale factor's `address` (and `functionCode`, default its own);
 * a SunSpec point names the `offset` of the *_SF point in the same model.
 */
export interface ScaleFactorDef {
  address?: number;
  functionCode?: FunctionCode;
  offset?: number;
}

/**
 * One quantity's register. Located either by `address` or, for a SunSpec point, by `model` and
 * `offset`: the decoder finds where the model starts on the device (SunSpec discovery).
 */
export interface RegisterDef {
  quantity: Quantity;
  /** 0-based protocol address (what goes on the wire), not the 3xxxx/4xxxx "register number". */
  address?: number;
  /** SunSpec model id the point belongs to, e.g. 103 (three-phase inverter). */
  model?: number;
  /** SunSpec: offset from the model's first point, the register after its length word (SMDX offsets). */
  offset?: number;
  /** 3 = holding registers, 4 = input registers. */
  functionCode: FunctionCode;
  dataType: DataType;
  /** 'big' = high word first. Bytes inside a word are always big-endian (Modbus). */
  wordOrder: WordOrder;
  /** Multiplies the raw decoded number to give the value in `unit`; negative only for power (sign convention). */
  scale: number;
  unit: Unit;
  /** Scale-factor register: the value is raw × scale × 10^sf. */
  scaleFactor?: ScaleFactorDef;
}

/** Inclusive [first, last] 0-based protocol addresses (16-bit words). */
export type AddressRange = [first: number, last: number];

/**
 * The addresses the real device answers, per register table, as its vendor documents them.
 * A simulator serves every address inside (zero where `registers` maps nothing) and refuses
 * reads that leave them, as the device does, so third-party tools see the same map; the
 * decoder reads across unmapped addresses only inside them.
 */
export interface RegisterRanges {
  /** Where the numbers come from: the vendor document and its version. */
  source: string;
  /** Input registers (FC 04). */
  input?: AddressRange[];
  /** Holding registers (FC 03). */
  holding?: AddressRange[];
}

/** A register whose content names the model (for `gtx gateway scan` and identify()). */
export interface IdentifyCheckDef {
  /** What the register holds, for the evidence: "meter code", "type designation". */
  label: string;
  address?: number;
  model?: number;
  offset?: number;
  functionCode: FunctionCode;
  dataType: IdentifyType;
  /** Registers a string occupies (two ASCII characters each). */
  words?: number;
  /** Values that identify the model: numbers for integers, strings (trimmed) for a string. */
  oneOf?: (number | string)[];
  /** Regular expression a string must match. */
  pattern?: string;
  /** What a simulator serves; must itself match. Default: the first of oneOf. */
  example?: number | string;
}

export interface IdentificationDef {
  /** All must match for the device to count as this model. */
  registers: IdentifyCheckDef[];
}

export interface SunSpecDef {
  /** Holding addresses where the "SunS" marker may be, tried in order; default 40000, 0, 50000. */
  baseAddresses?: number[];
}

export interface DeviceDefinition {
  /** Stable catalog id, e.g. "eastron-sdm120". */
  id: string;
  /** Short names accepted on the command line and in config, e.g. "sdm120". */
  aliases?: string[];
  vendor: string;
  model: string;
  description: string;
  phases: 1 | 3;
  /** Largest plausible |power| in W; simulators clamp to it, plausibility checks can use it. */
  maxPowerW: number;
  registers: RegisterDef[];
  /** Required quantities the device does not measure; they decode as 0 (a PV inverter has no import counter). */
  notMeasured?: (typeof UNMEASURABLE)[number][];
  /** Register contents meaning "no value": 'sunspec' (0x8000, 0xFFFF, 0x8000_0000 … NaN) or 'max' (0x7FFF, 0xFFFF …). SunSpec points default to 'sunspec'. */
  notAvailable?: NotAvailableConvention;
  /** Documented address ranges; absent = only the addresses `registers` covers. */
  ranges?: RegisterRanges;
  sunspec?: SunSpecDef;
  identification?: IdentificationDef;
}

/** Registers (16-bit words) each data type occupies. */
export const WORDS_PER_TYPE: Readonly<Record<DataType, 1 | 2 | 4>> = {
  float32: 2,
  int16: 1,
  uint16: 1,
  int32: 2,
  uint32: 2,
  int64: 4,
  uint64: 4,
};

/** Which units make sense for which quantity; anything else is a definition error. */
export const UNITS_FOR_QUANTITY: Readonly<Record<Quantity, readonly Unit[]>> = {
  importEnergy: ['kWh', 'Wh'],
  exportEnergy: ['kWh', 'Wh'],
  power: ['kW', 'W'],
  voltage: ['V'],
  voltageL2: ['V'],
  voltageL3: ['V'],
  current: ['A'],
  frequency: ['Hz'],
};

/** A reading without these cannot feed settlement, so a definition must map them (or declare them not measured). */
export const REQUIRED_QUANTITIES: readonly Quantity[] = ['importEnergy', 'exportEnergy', 'power'];

// Modbus FC 3/4 requests address 0..65535 and return at most 125 registers.
export const MAX_ADDRESS = 0xffff;

// Maps a const tuple of names to a union schema whose Static type keeps the literal names.
type LiteralSchemas<T extends readonly string[]> = { -readonly [K in keyof T]: TLiteral<T[K]> };
function literals<const T extends readonly string[]>(values: T): TUnion<LiteralSchemas<T>> {
  return Type.Union(values.map((v) => Type.Literal(v))) as TUnion<LiteralSchemas<T>>;
}

const Address = Type.Integer({ minimum: 0, maximum: MAX_ADDRESS });
const FunctionCodeSchema = Type.Union([Type.Literal(3), Type.Literal(4)]);
// 0xFFFF ends a SunSpec model chain, so it is no model id.
const ModelId = Type.Integer({ minimum: 1, maximum: 0xfffe });
const Offset = Type.Integer({ minimum: 0, maximum: MAX_ADDRESS });

export const ScaleFactorSchema = Type.Object(
  { address: Type.Optional(Address), functionCode: Type.Optional(FunctionCodeSchema), offset: Type.Optional(Offset) },
  { additionalProperties: false },
);

export const RegisterDefSchema = Type.Object(
  {
    quantity: literals(QUANTITIES),
    address: Type.Optional(Address),
    model: Type.Optional(ModelId),
    offset: Type.Optional(Offset),
    functionCode: FunctionCodeSchema,
    dataType: literals(DATA_TYPES),
    wordOrder: Type.Union([Type.Literal('big'), Type.Literal('little')]),
    scale: Type.Number(),
    unit: literals(UNITS),
    scaleFactor: Type.Optional(ScaleFactorSchema),
  },
  { additionalProperties: false },
);

export const AddressRangeSchema = Type.Tuple([Address, Address]);
export const RegisterRangesSchema = Type.Object(
  {
    source: Type.String({ minLength: 1 }),
    input: Type.Optional(Type.Array(AddressRangeSchema, { minItems: 1 })),
    holding: Type.Optional(Type.Array(AddressRangeSchema, { minItems: 1 })),
  },
  { additionalProperties: false },
);

export const IdentifyCheckSchema = Type.Object(
  {
    label: Type.String({ minLength: 1 }),
    address: Type.Optional(Address),
    model: Type.Optional(ModelId),
    offset: Type.Optional(Offset),
    functionCode: FunctionCodeSchema,
    dataType: literals(IDENTIFY_TYPES),
    words: Type.Optional(Type.Integer({ minimum: 1, maximum: 125 })),
    oneOf: Type.Optional(Type.Array(Type.Union([Type.Number(), Type.String()]), { minItems: 1 })),
    pattern: Type.Optional(Type.String({ minLength: 1 })),
    example: Type.Optional(Type.Union([Type.Number(), Type.String()])),
  },
  { additionalProperties: false },
);

const Id = Type.String({ pattern: '^[a-z0-9][a-z0-9._-]*$', maxLength: 64 });

export const DeviceDefinitionSchema = Type.Object(
  {
    id: Id,
    aliases: Type.Optional(Type.Array(Id)),
    vendor: Type.String({ minLength: 1 }),
    model: Type.String({ minLength: 1 }),
    description: Type.String(),
    phases: Type.Union([Type.Literal(1), Type.Literal(3)]),
    maxPowerW: Type.Number({ exclusiveMinimum: 0 }),
    registers: Type.Array(RegisterDefSchema, { minItems: 1 }),
    notMeasured: Type.Optional(Type.Array(literals(UNMEASURABLE), { minItems: 1 })),
    notAvailable: Type.Optional(literals(NOT_AVAILABLE_CONVENTIONS)),
    ranges: Type.Optional(RegisterRangesSchema),
    sunspec: Type.Optional(
      Type.Object({ baseAddresses: Type.Optional(Type.Array(Address, { minItems: 1 })) }, { additionalProperties: false }),
    ),
    identification: Type.Optional(
      Type.Object({ registers: Type.Array(IdentifyCheckSchema, { minItems: 1 }) }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false },
);

// Compile-time guard: the hand-written interfaces above and the schema must describe the same shape.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
export type DefinitionSchemaInSync = Assert<Same<Static<typeof DeviceDefinitionSchema>, DeviceDefinition>>;

const checker = TypeCompiler.Compile(DeviceDefinitionSchema);

export class DefinitionError extends Error {
  override readonly name = 'DefinitionError';
  constructor(
    /** Where the definition came from (file path or a label). */
    readonly source: string,
    /** JSON pointer of the offending field, e.g. "/registers/2/unit". */
    readonly field: string,
    readonly problem: string,
  ) {
    super(`invalid device definition ${source}: ${field || '(root)'}: ${problem}`);
  }
}

/** The range table of a function code: 4 = input, 3 = holding. */
export const RANGE_TABLE: Readonly<Record<FunctionCode, 'input' | 'holding'>> = { 4: 'input', 3: 'holding' };

export function registerWords(reg: Pick<RegisterDef, 'dataType'>): number {
  return WORDS_PER_TYPE[reg.dataType];
}

/** True for a register located by SunSpec model and offset rather than by address. */
export function isModelPoint(reg: Pick<RegisterDef, 'model' | 'offset'>): boolean {
  return reg.model !== undefined || reg.offset !== undefined;
}

/** True when the definition needs SunSpec discovery before its registers have addresses. */
export function usesSunSpec(def: Pick<DeviceDefinition, 'registers'>): boolean {
  return def.registers.some(isModelPoint);
}

function describeError(error: ValueError): string {
  // TypeBox says "Expected union value" for enums; listing the allowed values is what a user needs.
  if (error.type === ValueErrorType.Union) {
    const options = unionLiterals(error.schema);
    if (options.length > 0) {
      return `got ${JSON.stringify(error.value)}, expected one of ${options.map((o) => JSON.stringify(o)).join(', ')}`;
    }
  }
  if (error.type === ValueErrorType.ObjectAdditionalProperties) {
    return 'unknown field (check the spelling)';
  }
  return `${error.message}${error.value === undefined ? '' : ` (got ${JSON.stringify(error.value)})`}`;
}

function unionLiterals(schema: TSchema): (string | number)[] {
  const anyOf: unknown = schema['anyOf'];
  if (!Array.isArray(anyOf)) return [];
  const values: (string | number)[] = [];
  for (const member of anyOf) {
    const c: unknown = typeof member === 'object' && member !== null ? (member as Record<string, unknown>)['const'] : undefined;
    if (typeof c === 'string' || typeof c === 'number') values.push(c);
  }
  return values;
}

/**
 * Checks shape (schema) and meaning (required quantities, units, locations, overlaps, ranges,
 * identification) and returns the definition typed. Throws DefinitionError naming `source`
 * and the offending field.
 */
export function validateDefinition(input: unknown, source: string): DeviceDefinition {
  const first = checker.Errors(input).First();
  if (first !== undefined) {
    throw new DefinitionError(source, first.path, describeError(first));
  }
  const def = input as DeviceDefinition;
  checkDefinition(def, (field, problem) => new DefinitionError(source, field, problem));
  return def;
}

/** Parses JSON text and validates it; a syntax error is reported as a DefinitionError too. */
export function parseDefinition(text: string, source: string): DeviceDefinition {
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch (err) {
    throw new DefinitionError(source, '', `not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  return validateDefinition(input, source);
}

// A device definition describes one meter model as data: which register holds which quantity,
// how it is encoded and in which unit. Adding a meter is a new JSON file, not new code.
import { Type, type Static, type TLiteral, type TSchema, type TUnion } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';

export const QUANTITIES = ['importEnergy', 'exportEnergy', 'power', 'voltage', 'current', 'frequency'] as const;
export const DATA_TYPES = ['float32', 'int16', 'uint16', 'int32', 'uint32'] as const;
export const UNITS = ['kWh', 'Wh', 'kW', 'W', 'V', 'A', 'Hz'] as const;

export type Quantity = (typeof QUANTITIES)[number];
export type DataType = (typeof DATA_TYPES)[number];
export type Unit = (typeof UNITS)[number];
export type FunctionCode = 3 | 4;
export type WordOrder = 'big' | 'little';

export interface RegisterDef {
  quantity: Quantity;
  /** 0-based protocol address (what goes on the wire), not the 3xxxx/4xxxx "register number". */
  address: number;
  /** 3 = holding registers, 4 = input registers. */
  functionCode: FunctionCode;
  dataType: DataType;
  /** 'big' = high word first. Bytes inside a word are always big-endian (Modbus). */
  wordOrder: WordOrder;
  /** Multiplies the raw decoded number to give the value in `unit`. */
  scale: number;
  unit: Unit;
}

/** Inclusive [first, last] 0-based protocol addresses (16-bit words). */
export type AddressRange = [first: number, last: number];

/**
 * The addresses the real device answers, per register table, as its vendor documents them.
 * A simulator serves every address inside (zero where `registers` maps nothing) and refuses
 * reads that leave them, as the device does, so third-party tools see the same map.
 */
export interface RegisterRanges {
  /** Where the numbers come from: the vendor document and its version. */
  source: string;
  /** Input registers (FC 04). */
  input?: AddressRange[];
  /** Holding registers (FC 03). */
  holding?: AddressRange[];
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
  /** Documented address ranges; absent = only the addresses `registers` covers. */
  ranges?: RegisterRanges;
}

/** Registers (16-bit words) each data type occupies. */
export const WORDS_PER_TYPE: Readonly<Record<DataType, 1 | 2>> = {
  float32: 2,
  int16: 1,
  uint16: 1,
  int32: 2,
  uint32: 2,
};

/** Which units make sense for which quantity; anything else is a definition error. */
export const UNITS_FOR_QUANTITY: Readonly<Record<Quantity, readonly Unit[]>> = {
  importEnergy: ['kWh', 'Wh'],
  exportEnergy: ['kWh', 'Wh'],
  power: ['kW', 'W'],
  voltage: ['V'],
  current: ['A'],
  frequency: ['Hz'],
};

/** A reading without these cannot feed settlement, so a definition must map them. */
export const REQUIRED_QUANTITIES: readonly Quantity[] = ['importEnergy', 'exportEnergy', 'power'];

// Modbus FC 3/4 requests address 0..65535 and return at most 125 registers.
export const MAX_ADDRESS = 0xffff;

// Maps a const tuple of names to a union schema whose Static type keeps the literal names.
type LiteralSchemas<T extends readonly string[]> = { -readonly [K in keyof T]: TLiteral<T[K]> };
function literals<const T extends readonly string[]>(values: T): TUnion<LiteralSchemas<T>> {
  return Type.Union(values.map((v) => Type.Literal(v))) as TUnion<LiteralSchemas<T>>;
}

export const RegisterDefSchema = Type.Object(
  {
    quantity: literals(QUANTITIES),
    address: Type.Integer({ minimum: 0, maximum: MAX_ADDRESS }),
    functionCode: Type.Union([Type.Literal(3), Type.Literal(4)]),
    dataType: literals(DATA_TYPES),
    wordOrder: Type.Union([Type.Literal('big'), Type.Literal('little')]),
    scale: Type.Number({ exclusiveMinimum: 0 }),
    unit: literals(UNITS),
  },
  { additionalProperties: false },
);

const Address = Type.Integer({ minimum: 0, maximum: MAX_ADDRESS });
export const AddressRangeSchema = Type.Tuple([Address, Address]);
export const RegisterRangesSchema = Type.Object(
  {
    source: Type.String({ minLength: 1 }),
    input: Type.Optional(Type.Array(AddressRangeSchema, { minItems: 1 })),
    holding: Type.Optional(Type.Array(AddressRangeSchema, { minItems: 1 })),
  },
  { additionalProperties: false },
);

export const DeviceDefinitionSchema = Type.Object(
  {
    id: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]*$', maxLength: 64 }),
    aliases: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z0-9][a-z0-9._-]*$', maxLength: 64 }))),
    vendor: Type.String({ minLength: 1 }),
    model: Type.String({ minLength: 1 }),
    description: Type.String(),
    phases: Type.Union([Type.Literal(1), Type.Literal(3)]),
    maxPowerW: Type.Number({ exclusiveMinimum: 0 }),
    registers: Type.Array(RegisterDefSchema, { minItems: 1 }),
    ranges: Type.Optional(RegisterRangesSchema),
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

function hex(address: number): string {
  return `0x${address.toString(16).padStart(4, '0')}`;
}

/**
 * Checks shape (schema) and meaning (required quantities, units, overlaps) and returns the
 * definition typed. Throws DefinitionError naming `source` and the offending field.
 */
export function validateDefinition(input: unknown, source: string): DeviceDefinition {
  const first = checker.Errors(input).First();
  if (first !== undefined) {
    throw new DefinitionError(source, first.path, describeError(first));
  }
  const def = input as DeviceDefinition;

  def.registers.forEach((reg, i) => {
    const allowed = UNITS_FOR_QUANTITY[reg.quantity];
    if (!allowed.includes(reg.unit)) {
      throw new DefinitionError(
        source,
        `/registers/${i}/unit`,
        `unit ${JSON.stringify(reg.unit)} does not fit quantity ${reg.quantity}; use ${allowed.join(' or ')}`,
      );
    }
    if (!Number.isFinite(reg.scale)) {
      throw new DefinitionError(source, `/registers/${i}/scale`, 'scale must be a finite number');
    }
    const last = reg.address + registerWords(reg) - 1;
    if (last > MAX_ADDRESS) {
      throw new DefinitionError(source, `/registers/${i}/address`, `${reg.dataType} at ${hex(reg.address)} runs past the last address ${hex(MAX_ADDRESS)}`);
    }
  });

  for (const quantity of REQUIRED_QUANTITIES) {
    if (!def.registers.some((r) => r.quantity === quantity)) {
      throw new DefinitionError(source, '/registers', `no register for ${quantity}; ${REQUIRED_QUANTITIES.join(', ')} are required`);
    }
  }

  // One register per quantity: the decoder would otherwise have to guess which one counts.
  const seen = new Map<Quantity, number>();
  def.registers.forEach((reg, i) => {
    const previous = seen.get(reg.quantity);
    if (previous !== undefined) {
      throw new DefinitionError(source, `/registers/${i}/quantity`, `${reg.quantity} is already mapped by /registers/${previous}`);
    }
    seen.set(reg.quantity, i);
  });

  // FC 3 and FC 4 are separate address spaces, so only registers of the same function code can overlap.
  def.registers.forEach((a, i) => {
    def.registers.forEach((b, j) => {
      if (j <= i || a.functionCode !== b.functionCode) return;
      const aEnd = a.address + registerWords(a);
      const bEnd = b.address + registerWords(b);
      if (a.address < bEnd && b.address < aEnd) {
        throw new DefinitionError(
          source,
          `/registers/${j}/address`,
          `${b.quantity} at ${hex(b.address)} (${registerWords(b)} words) overlaps ${a.quantity} at ${hex(a.address)} (${registerWords(a)} words, /registers/${i})`,
        );
      }
    });
  });

  if (def.ranges !== undefined) checkRanges(def, def.ranges, source);

  return def;
}

/** Ranges in order and apart, and every mapped register inside one: a map the device would refuse is a typo. */
function checkRanges(def: DeviceDefinition, ranges: RegisterRanges, source: string): void {
  for (const table of ['input', 'holding'] as const) {
    const list = ranges[table] ?? [];
    list.forEach(([first, last], i) => {
      if (first > last) {
        throw new DefinitionError(source, `/ranges/${table}/${i}`, `first address ${hex(first)} is after last address ${hex(last)}`);
      }
      const previous = list[i - 1];
      if (previous !== undefined && first <= previous[1]) {
        throw new DefinitionError(
          source,
          `/ranges/${table}/${i}`,
          `starts at ${hex(first)}, not after the previous range's last address ${hex(previous[1])}: list ranges in address order, apart`,
        );
      }
    });
  }
  def.registers.forEach((reg, i) => {
    const table = RANGE_TABLE[reg.functionCode];
    const last = reg.address + registerWords(reg) - 1;
    if (!(ranges[table] ?? []).some(([a, b]) => a <= reg.address && last <= b)) {
      throw new DefinitionError(
        source,
        `/registers/${i}/address`,
        `${reg.quantity} at ${hex(reg.address)}..${hex(last)} lies outside every documented ${table} range (/ranges/${table})`,
      );
    }
  });
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

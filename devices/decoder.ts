// Turns raw Modbus registers into integer readings, using a device definition.
// This is the one place where meter values become integers (Wh, W, mV, mA, mHz).
import { decodeRaw, encodeRaw, exactNumber, isNotAvailable, powerOfTen, rawLimits } from './codec.ts';
import {
  REQUIRED_QUANTITIES,
  WORDS_PER_TYPE,
  usesSunSpec,
  type DeviceDefinition,
  type FunctionCode,
  type Quantity,
  type RegisterDef,
  type Unit,
} from './definition.ts';
import { mapSpans, planBlocks, type ReadBlock } from './plan.ts';
import type { RegisterReader } from './reader.ts';
import { modelsUsed, resolveMap, type RegisterMap, type ResolvedRegister } from './register-map.ts';
import { discoverSunSpec, SunSpecError, type SunSpecLayout } from './sunspec.ts';

export { MAX_REGISTERS_PER_READ, type ReadBlock } from './plan.ts';
export type { RegisterReader } from './reader.ts';

export interface DecodedReading {
  importWh: number;
  exportWh: number;
  powerW: number;
  voltageMilliV?: number;
  /** Phases 2 and 3 of a three-phase meter that maps them; not published (the gateway's checks use them). */
  voltageL2MilliV?: number;
  voltageL3MilliV?: number;
  currentMilliA?: number;
  frequencyMilliHz?: number;
}

/** Field of DecodedReading each quantity lands in. */
export const READING_FIELD: Readonly<Record<Quantity, keyof DecodedReading>> = {
  importEnergy: 'importWh',
  exportEnergy: 'exportWh',
  power: 'powerW',
  voltage: 'voltageMilliV',
  voltageL2: 'voltageL2MilliV',
  voltageL3: 'voltageL3MilliV',
  current: 'currentMilliA',
  frequency: 'frequencyMilliHz',
};

/** Multiplier from a definition unit to the integer unit of DecodedReading. */
export const READING_FACTOR: Readonly<Record<Unit, number>> = {
  kWh: 1000, // → Wh
  Wh: 1,
  kW: 1000, // → W
  W: 1,
  V: 1000, // → mV
  A: 1000, // → mA
  Hz: 1000, // → mHz
};

/** SunSpec allows scale factors -10..10; anything else is a corrupt or misread register. */
export const MAX_SCALE_EXPONENT = 10;

export interface BlockData extends ReadBlock {
  /** The 16-bit words the device returned for this block, in address order. */
  registers: readonly number[];
}

export type DecodeProblem =
  | 'not-finite'
  | 'negative-energy'
  | 'missing-registers'
  | 'bad-register-value'
  | 'out-of-range'
  | 'not-available'
  | 'bad-scale-factor';

export class DecodeError extends Error {
  override readonly name = 'DecodeError';
  constructor(
    readonly deviceId: string,
    readonly quantity: Quantity,
    readonly functionCode: FunctionCode,
    readonly address: number,
    readonly problem: DecodeProblem,
    detail: string,
  ) {
    const space = functionCode === 4 ? 'input register' : 'holding register';
    super(`${deviceId}: ${quantity} at ${space} 0x${address.toString(16).padStart(4, '0')} (${address}) ${detail}`);
  }
}

/**
 * The blocks one reading takes: registers, scale factors (and SunSpec model headers) of one
 * function code share a request when they touch or lie within one documented range, up to 125
 * registers. A SunSpec definition needs the device's `layout` (createDecoder discovers it).
 */
export function planReads(def: DeviceDefinition, layout?: SunSpecLayout): ReadBlock[] {
  const map = resolveMap(def, layout);
  return planBlocks(mapSpans(map), map.readable);
}

type ValueRegister = Pick<RegisterDef, 'dataType' | 'wordOrder' | 'scale'>;

/** The value in the register's own unit (e.g. kWh as a float), from its words in wire order; scale factors not applied. */
export function decodeValue(reg: ValueRegister, words: readonly number[]): number {
  const raw = exactNumber(decodeRaw(reg.dataType, reg.wordOrder, words));
  if (raw === undefined) throw new RangeError(`${reg.dataType} value beyond 2^53 cannot be represented exactly`);
  return raw * reg.scale;
}

/**
 * Inverse of decodeValue: the words (wire order) a device would hold for `value` in the
 * register's unit, divided by 10^`exponent` when the register has a scale factor. Integer types
 * round to the nearest raw step and throw RangeError when out of range.
 */
export function encodeValue(reg: ValueRegister & Partial<Pick<RegisterDef, 'quantity' | 'unit'>>, value: number, exponent = 0): number[] {
  const raw = powerOfTen(value / reg.scale, -exponent);
  if (reg.dataType === 'float32') return encodeRaw('float32', reg.wordOrder, raw);
  const n = Math.round(raw);
  const [min, max] = rawLimits(reg.dataType);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new RangeError(`${reg.quantity ?? 'value'}: ${value} ${reg.unit ?? ''} (raw ${raw}) does not fit ${reg.dataType}`);
  }
  return encodeRaw(reg.dataType, reg.wordOrder, Number.isSafeInteger(n) ? n : BigInt(n));
}

function blockWords(blocks: readonly BlockData[], fc: FunctionCode, address: number, count: number): readonly number[] | undefined {
  const block = blocks.find((b) => b.functionCode === fc && b.address <= address && address + count <= b.address + b.registers.length);
  if (block === undefined) return undefined;
  const offset = address - block.address;
  return block.registers.slice(offset, offset + count);
}

const hexWords = (words: readonly number[]) => words.map((w) => `0x${w.toString(16).padStart(4, '0')}`).join(' ');

/** Decodes one register to its integer reading unit, or undefined when the device has no value. */
function decodeOne(def: DeviceDefinition, reg: ResolvedRegister, blocks: readonly BlockData[]): number | undefined {
  const fail = (problem: DecodeProblem, detail: string) => new DecodeError(def.id, reg.quantity, reg.functionCode, reg.address, problem, detail);
  const wordsAt = (fc: FunctionCode, address: number, count: number, what: string): readonly number[] => {
    const words = blockWords(blocks, fc, address, count);
    if (words === undefined) throw fail('missing-registers', `${what}was not among the registers read`);
    for (const w of words) {
      if (!Number.isInteger(w) || w < 0 || w > 0xffff) throw fail('bad-register-value', `${what}holds ${w}, which is not a 16-bit register value`);
    }
    return words;
  };
  const words = wordsAt(reg.functionCode, reg.address, WORDS_PER_TYPE[reg.dataType], '');
  const raw = decodeRaw(reg.dataType, reg.wordOrder, words);
  if (isNotAvailable(reg.notAvailable, reg.dataType, raw)) return missing(reg, fail, `holds ${hexWords(words)}, the "not available" value`);

  let exponent = 0;
  if (reg.scaleFactor !== undefined) {
    const { functionCode, address } = reg.scaleFactor;
    const sfWord = wordsAt(functionCode, address, 1, `(its scale factor at 0x${address.toString(16).padStart(4, '0')}) `)[0] ?? 0;
    // 0x8000 is SunSpec's "not implemented" scale factor: the value cannot be scaled.
    if (sfWord === 0x8000) return missing(reg, fail, `has its scale factor at ${address} not implemented (0x8000)`);
    exponent = sfWord >= 0x8000 ? sfWord - 0x10000 : sfWord;
    if (Math.abs(exponent) > MAX_SCALE_EXPONENT) {
      throw fail('bad-scale-factor', `has scale factor 10^${exponent} (register ${address}); scale factors lie in -${MAX_SCALE_EXPONENT}..${MAX_SCALE_EXPONENT}`);
    }
  }

  const n = exactNumber(raw);
  if (n === undefined) {
    throw fail('out-of-range', `holds ${raw} (${hexWords(words)}), beyond 2^53: too large to represent exactly; check dataType and wordOrder`);
  }
  const value = powerOfTen(n * reg.scale, exponent);
  if (!Number.isFinite(value)) {
    throw fail('not-finite', `is ${value}; check dataType and wordOrder in the definition, or the meter is faulty`);
  }
  const energy = reg.quantity === 'importEnergy' || reg.quantity === 'exportEnergy';
  if (energy && value < 0) {
    throw fail('negative-energy', `is ${value} ${reg.unit}; an energy counter cannot be negative`);
  }
  // The single conversion to an integer; `+ 0` turns -0 into 0.
  const integer = Math.round(value * READING_FACTOR[reg.unit]) + 0;
  if (!Number.isSafeInteger(integer)) {
    throw fail('out-of-range', `is ${value} ${reg.unit}, too large to represent exactly`);
  }
  return integer;
}

/** A register without a value: an error for a quantity every reading needs, else left out. */
function missing(reg: ResolvedRegister, fail: (p: DecodeProblem, d: string) => DecodeError, detail: string): undefined {
  if (REQUIRED_QUANTITIES.includes(reg.quantity)) {
    throw fail('not-available', `${detail}; a reading needs ${reg.quantity}, and this device does not report it`);
  }
  return undefined;
}

function decodeMap(map: RegisterMap, blocks: readonly BlockData[]): DecodedReading {
  const def = map.definition;
  const reading: DecodedReading = { importWh: 0, exportWh: 0, powerW: 0 };
  for (const reg of map.registers) {
    const value = decodeOne(def, reg, blocks);
    if (value !== undefined) reading[READING_FIELD[reg.quantity]] = value;
  }
  return reading;
}

/** Decodes the blocks read per planReads (any covering set of blocks works) into integers. */
export function decodeBlocks(def: DeviceDefinition, blocks: readonly BlockData[], layout?: SunSpecLayout): DecodedReading {
  return decodeMap(resolveMap(def, layout), blocks);
}

/** Reads one meter's registers and decodes them; keeps what it discovered between readings. */
export interface MeterDecoder {
  readonly definition: DeviceDefinition;
  /** The SunSpec layout in use, once discovered (undefined for a definition without SunSpec points). */
  readonly layout: SunSpecLayout | undefined;
  /** One reading: discovery first if needed, then one request per planned block. */
  read(read: RegisterReader): Promise<DecodedReading>;
  /** The blocks a reading takes now (for a SunSpec definition, after the first read). */
  plan(): ReadBlock[];
  /** Forgets the discovered layout: the next read discovers again (e.g. after a device swap). */
  forget(): void;
}

export interface DecoderOptions {
  /** Holding addresses where the SunSpec marker may be; default the definition's, else 40000, 0, 50000. */
  sunspecBases?: readonly number[];
}

/**
 * A decoder that keeps a SunSpec definition's discovered layout, so polling walks the model
 * chain once; each reading re-checks the models' ID and length words (in the same requests)
 * and discovers again if the device changed.
 */
export function createDecoder(def: DeviceDefinition, options: DecoderOptions = {}): MeterDecoder {
  const sunspec = usesSunSpec(def);
  let layout: SunSpecLayout | undefined;
  let map: RegisterMap | undefined = sunspec ? undefined : resolveMap(def);
  let blocks: ReadBlock[] | undefined = map === undefined ? undefined : planBlocks(mapSpans(map), map.readable);

  const discover = async (read: RegisterReader) => {
    layout = await discoverSunSpec(read, { bases: options.sunspecBases ?? def.sunspec?.baseAddresses, want: modelsUsed(def) });
    map = resolveMap(def, layout);
    blocks = planBlocks(mapSpans(map), map.readable);
  };
  const readBlocks = async (read: RegisterReader): Promise<BlockData[]> => {
    const data: BlockData[] = [];
    for (const block of blocks ?? []) data.push({ ...block, registers: await read(block.functionCode, block.address, block.count) });
    return data;
  };
  /** The first model whose ID or length word no longer matches, if any. */
  const changed = (data: readonly BlockData[]): string | undefined => {
    for (const m of map?.models ?? []) {
      const header = blockWords(data, 3, m.address, 2);
      if (header?.[0] !== m.id || header[1] !== m.length) {
        return `model ${m.id} (length ${m.length}) expected at ${m.address}, found ${header === undefined ? 'nothing' : hexWords(header)}`;
      }
    }
    return undefined;
  };

  return {
    definition: def,
    get layout() {
      return layout;
    },
    async read(read) {
      let fresh = false;
      if (map === undefined) {
        await discover(read);
        fresh = true;
      }
      let data = await readBlocks(read);
      let change = changed(data);
      if (change !== undefined && !fresh) {
        await discover(read);
        data = await readBlocks(read);
        change = changed(data);
      }
      if (change !== undefined || map === undefined) {
        throw new SunSpecError('bad-chain', `${def.id}: the SunSpec layout changed while reading: ${change ?? 'no layout'}`);
      }
      return decodeMap(map, data);
    },
    plan() {
      if (blocks === undefined) throw new SunSpecError('missing-model', `${def.id}: the SunSpec layout is discovered on the first read`);
      return blocks.map((b) => ({ ...b }));
    },
    forget() {
      if (!sunspec) return;
      layout = undefined;
      map = undefined;
      blocks = undefined;
    },
  };
}

// One decoder per SunSpec definition for decodeRegisters(): a poller calling it every cycle with
// a fresh read callback still walks the chain only once. Safe when several devices share a
// definition: a device whose models sit elsewhere fails the header check and is rediscovered.
const shared = new WeakMap<DeviceDefinition, MeterDecoder>();

/**
 * Reads every planned block through `read` (one request per block) and decodes them. A SunSpec
 * definition's layout is discovered on first use and kept per definition (see createDecoder).
 */
export async function decodeRegisters(def: DeviceDefinition, read: RegisterReader): Promise<DecodedReading> {
  if (!usesSunSpec(def)) return createDecoder(def).read(read);
  let decoder = shared.get(def);
  if (decoder === undefined) {
    decoder = createDecoder(def);
    shared.set(def, decoder);
  }
  return decoder.read(read);
}

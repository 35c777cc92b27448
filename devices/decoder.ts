// Turns raw Modbus registers into integer readings, using a device definition.
// This is the one place where meter floats become integers (Wh, W, mV, mA, mHz).
import {
  registerWords,
  type DeviceDefinition,
  type FunctionCode,
  type Quantity,
  type RegisterDef,
  type Unit,
} from './definition.ts';

export interface DecodedReading {
  importWh: number;
  exportWh: number;
  powerW: number;
  voltageMilliV?: number;
  currentMilliA?: number;
  frequencyMilliHz?: number;
}

/** Field of DecodedReading each quantity lands in. */
export const READING_FIELD: Readonly<Record<Quantity, keyof DecodedReading>> = {
  importEnergy: 'importWh',
  exportEnergy: 'exportWh',
  power: 'powerW',
  voltage: 'voltageMilliV',
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

/** Modbus limits one FC 3/4 request to 125 registers. */
export const MAX_REGISTERS_PER_READ = 125;

export interface ReadBlock {
  functionCode: FunctionCode;
  address: number;
  count: number;
}

export interface BlockData extends ReadBlock {
  /** The 16-bit words the device returned for this block, in address order. */
  registers: readonly number[];
}

export type DecodeProblem = 'not-finite' | 'negative-energy' | 'missing-registers' | 'bad-register-value' | 'out-of-range';

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
 * Groups registers into as few reads as possible: registers of the same function code that sit
 * back to back become one block. Gaps are never bridged, because many meters (and our simulator)
 * answer "illegal data address" for unmapped registers in between.
 */
export function planReads(def: DeviceDefinition): ReadBlock[] {
  const sorted = [...def.registers].sort((a, b) => a.functionCode - b.functionCode || a.address - b.address);
  const blocks: ReadBlock[] = [];
  for (const reg of sorted) {
    const words = registerWords(reg);
    const last = blocks.at(-1);
    if (
      last !== undefined &&
      last.functionCode === reg.functionCode &&
      last.address + last.count === reg.address &&
      last.count + words <= MAX_REGISTERS_PER_READ
    ) {
      last.count += words;
    } else {
      blocks.push({ functionCode: reg.functionCode, address: reg.address, count: words });
    }
  }
  return blocks;
}

function combine32(reg: RegisterDef, words: readonly number[]): { hi: number; lo: number } {
  const [w0 = 0, w1 = 0] = words;
  return reg.wordOrder === 'big' ? { hi: w0, lo: w1 } : { hi: w1, lo: w0 };
}

/** Raw number in the register as the device stored it, before `scale`. */
function decodeRaw(reg: RegisterDef, words: readonly number[]): number {
  const w0 = words[0] ?? 0;
  switch (reg.dataType) {
    case 'uint16':
      return w0;
    case 'int16':
      return w0 >= 0x8000 ? w0 - 0x10000 : w0;
    case 'uint32': {
      const { hi, lo } = combine32(reg, words);
      return hi * 0x10000 + lo;
    }
    case 'int32': {
      const { hi, lo } = combine32(reg, words);
      return ((hi << 16) | lo) >> 0;
    }
    case 'float32': {
      const { hi, lo } = combine32(reg, words);
      const view = new DataView(new ArrayBuffer(4));
      view.setUint16(0, hi);
      view.setUint16(2, lo);
      return view.getFloat32(0);
    }
  }
}

/** The value in the register's own unit (e.g. kWh as a float), from its words in wire order. */
export function decodeValue(reg: RegisterDef, words: readonly number[]): number {
  return decodeRaw(reg, words) * reg.scale;
}

/**
 * Inverse of decodeValue: the words (wire order) a device would hold for `value` in `reg.unit`.
 * Integer types round to the nearest raw step and throw RangeError when out of range.
 */
export function encodeValue(reg: RegisterDef, value: number): number[] {
  const raw = value / reg.scale;
  if (reg.dataType === 'float32') {
    const view = new DataView(new ArrayBuffer(4));
    view.setFloat32(0, raw);
    return order(reg, view.getUint16(0), view.getUint16(2));
  }
  const n = Math.round(raw);
  const ranges: Record<'int16' | 'uint16' | 'int32' | 'uint32', [number, number]> = {
    int16: [-0x8000, 0x7fff],
    uint16: [0, 0xffff],
    int32: [-0x80000000, 0x7fffffff],
    uint32: [0, 0xffffffff],
  };
  const [min, max] = ranges[reg.dataType];
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new RangeError(`${reg.quantity}: ${value} ${reg.unit} (raw ${raw}) does not fit ${reg.dataType}`);
  }
  switch (reg.dataType) {
    case 'uint16':
      return [n];
    case 'int16':
      return [n < 0 ? n + 0x10000 : n];
    case 'uint32':
    case 'int32': {
      const u = n < 0 ? n + 0x100000000 : n;
      return order(reg, Math.floor(u / 0x10000), u % 0x10000);
    }
  }
}

function order(reg: RegisterDef, hi: number, lo: number): number[] {
  return reg.wordOrder === 'big' ? [hi, lo] : [lo, hi];
}

function wordsFor(def: DeviceDefinition, reg: RegisterDef, blocks: readonly BlockData[]): number[] {
  const count = registerWords(reg);
  const block = blocks.find(
    (b) => b.functionCode === reg.functionCode && b.address <= reg.address && reg.address + count <= b.address + b.registers.length,
  );
  if (block === undefined) {
    throw new DecodeError(def.id, reg.quantity, reg.functionCode, reg.address, 'missing-registers', `was not among the registers read`);
  }
  const offset = reg.address - block.address;
  const words = block.registers.slice(offset, offset + count);
  for (const w of words) {
    if (!Number.isInteger(w) || w < 0 || w > 0xffff) {
      throw new DecodeError(def.id, reg.quantity, reg.functionCode, reg.address, 'bad-register-value', `holds ${w}, which is not a 16-bit register value`);
    }
  }
  return words;
}

/** Decodes the blocks read per planReads (any covering set of blocks works) into integers. */
export function decodeBlocks(def: DeviceDefinition, blocks: readonly BlockData[]): DecodedReading {
  const reading: DecodedReading = { importWh: 0, exportWh: 0, powerW: 0 };
  for (const reg of def.registers) {
    const value = decodeValue(reg, wordsFor(def, reg, blocks));
    const fail = (problem: DecodeProblem, detail: string) =>
      new DecodeError(def.id, reg.quantity, reg.functionCode, reg.address, problem, detail);
    if (!Number.isFinite(value)) {
      throw fail('not-finite', `is ${value}; check dataType and wordOrder in the definition, or the meter is faulty`);
    }
    const energy = reg.quantity === 'importEnergy' || reg.quantity === 'exportEnergy';
    if (energy && value < 0) {
      throw fail('negative-energy', `is ${value} ${reg.unit}; an energy counter cannot be negative`);
    }
    // The single float → integer conversion; `+ 0` turns -0 into 0.
    const integer = Math.round(value * READING_FACTOR[reg.unit]) + 0;
    if (!Number.isSafeInteger(integer)) {
      throw fail('out-of-range', `is ${value} ${reg.unit}, too large to represent exactly`);
    }
    reading[READING_FIELD[reg.quantity]] = integer;
  }
  return reading;
}

/** Reads a register block from a device; sync or async so tests and pollers can share it. */
export type RegisterReader = (
  functionCode: FunctionCode,
  address: number,
  count: number,
) => readonly number[] | Promise<readonly number[]>;

/** Reads every planned block through `read` (one request per block) and decodes them. */
export async function decodeRegisters(def: DeviceDefinition, read: RegisterReader): Promise<DecodedReading> {
  const blocks: BlockData[] = [];
  for (const block of planReads(def)) {
    blocks.push({ ...block, registers: await read(block.functionCode, block.address, block.count) });
  }
  return decodeBlocks(def, blocks);
}

// SunSpec Modbus: a "SunS" marker at a well-known holding address, then a chain of models,
// each an ID word, a length word and `length` registers, ended by ID 0xFFFF. A point's address
// is only known after walking the chain on the device itself.
import { decodeString } from './codec.ts';
import { describeException, modbusExceptionCode, type RegisterReader } from './reader.ts';

/** "SunS" as two registers. */
export const SUNSPEC_MARKER: readonly [number, number] = [0x5375, 0x6e53];
/** Where the SunSpec specification allows the marker, in the order it is searched. */
export const SUNSPEC_BASE_ADDRESSES: readonly number[] = [40000, 0, 50000];
/** Model ID that ends the chain. */
export const SUNSPEC_END_ID = 0xffff;
export const COMMON_MODEL_ID = 1;

/**
 * Model lengths of the SunSpec information models the catalog uses (SunSpec Information Model
 * Reference: common 1 is 65 or 66 with the pad register; inverters 101-103 are 50; meters
 * 201-204 are 105). Only the simulator needs them; a real device states its lengths.
 */
export const MODEL_LENGTHS: Readonly<Record<number, number>> = { 1: 66, 101: 50, 102: 50, 103: 50, 201: 105, 202: 105, 203: 105, 204: 105 };

export interface SunSpecModel {
  id: number;
  /** Address of the model's ID word; its first point is at address + 2. */
  address: number;
  /** Registers after the length word. */
  length: number;
}

export interface SunSpecLayout {
  /** Address of the "SunS" marker. */
  base: number;
  /** Models in chain order (only up to the last one needed, when discovery stopped early). */
  models: SunSpecModel[];
}

export type SunSpecProblem = 'no-marker' | 'missing-model' | 'bad-chain';

export class SunSpecError extends Error {
  override readonly name = 'SunSpecError';
  constructor(
    readonly problem: SunSpecProblem,
    message: string,
  ) {
    super(message);
  }
}

/** Address of the point at `offset` (SMDX offset: 0 = the register after the length word). */
export function pointAddress(model: SunSpecModel, offset: number): number {
  return model.address + 2 + offset;
}

/** The first model with this ID in the chain, if any. */
export function findModel(layout: SunSpecLayout, id: number): SunSpecModel | undefined {
  return layout.models.find((m) => m.id === id);
}

export interface DiscoverOptions {
  /** Marker addresses to try, in order; default 40000, 0, 50000. */
  bases?: readonly number[];
  /** Model IDs the caller needs: the walk stops once all are found, and fails if one is missing. */
  want?: readonly number[];
}

const hex = (w: number | undefined) => `0x${(w ?? 0).toString(16).padStart(4, '0')}`;
const MAX_MODELS = 256;

/**
 * Finds the marker and walks the model chain with `read`. One request per model header (the
 * marker read also takes the first header). A Modbus exception where the next header should be
 * ends the chain (some devices omit the 0xFFFF end model); other errors propagate.
 */
export async function discoverSunSpec(read: RegisterReader, options: DiscoverOptions = {}): Promise<SunSpecLayout> {
  const bases = options.bases ?? SUNSPEC_BASE_ADDRESSES;
  const tried: string[] = [];
  for (const base of bases) {
    let words: readonly number[];
    try {
      words = await read(3, base, 4);
    } catch (err) {
      const code = modbusExceptionCode(err);
      if (code === undefined) throw err;
      tried.push(`${base}: ${describeException(code)}`);
      continue;
    }
    if (words[0] === SUNSPEC_MARKER[0] && words[1] === SUNSPEC_MARKER[1]) {
      return walk(read, base, [words[2] ?? SUNSPEC_END_ID, words[3] ?? 0], options.want);
    }
    tried.push(`${base}: ${hex(words[0])} ${hex(words[1])}`);
  }
  throw new SunSpecError(
    'no-marker',
    `no SunSpec marker "SunS" (0x5375 0x6e53) at holding register ${bases.join(', ')} (${tried.join('; ')}); the device does not speak SunSpec at these addresses`,
  );
}

async function walk(read: RegisterReader, base: number, first: [number, number], want: readonly number[] | undefined): Promise<SunSpecLayout> {
  const models: SunSpecModel[] = [];
  let address = base + 2;
  let [id, length] = first;
  const complete = () => want !== undefined && want.every((w) => models.some((m) => m.id === w));
  // id 0 is no model either: some devices end the chain with zeros.
  while (id !== SUNSPEC_END_ID && id !== 0) {
    if (address + 1 + length > 0xffff) {
      throw new SunSpecError('bad-chain', `SunSpec model ${id} at ${address} with length ${length} runs past address 65535; the chain is corrupt`);
    }
    models.push({ id, address, length });
    if (complete()) break;
    if (models.length >= MAX_MODELS) throw new SunSpecError('bad-chain', `more than ${MAX_MODELS} SunSpec models from ${base}; the chain does not end`);
    address += 2 + length;
    if (address + 1 > 0xffff) break;
    try {
      const header = await read(3, address, 2);
      [id, length] = [header[0] ?? SUNSPEC_END_ID, header[1] ?? 0];
    } catch (err) {
      if (modbusExceptionCode(err) === undefined) throw err;
      break;
    }
  }
  const layout = { base, models };
  const missing = (want ?? []).filter((w) => findModel(layout, w) === undefined);
  if (missing.length > 0) {
    throw new SunSpecError(
      'missing-model',
      `SunSpec model ${missing.join(', ')} not found in the chain at ${base} (it has ${models.map((m) => `${m.id}@${m.address}`).join(', ') || 'no models'}); wrong device or definition`,
    );
  }
  return layout;
}

export interface CommonModelInfo {
  manufacturer: string;
  model: string;
  version: string;
  serial: string;
}

/** Offsets of common model 1's strings (SMDX): Mn 0..15, Md 16..31, Opt 32..39, Vr 40..47, SN 48..63. */
export const COMMON_STRINGS = { manufacturer: [0, 16], model: [16, 16], options: [32, 8], version: [40, 8], serial: [48, 16] } as const;

/** Decodes common model 1's strings from its 64+ registers after the length word. */
export function parseCommonModel(points: readonly number[]): CommonModelInfo {
  const text = ([offset, words]: readonly [number, number]) => decodeString(points.slice(offset, offset + words));
  return {
    manufacturer: text(COMMON_STRINGS.manufacturer),
    model: text(COMMON_STRINGS.model),
    version: text(COMMON_STRINGS.version),
    serial: text(COMMON_STRINGS.serial),
  };
}

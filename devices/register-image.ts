// What a simulated device holds at each address: fixed words (SunSpec marker, model headers and
// common-model strings, identification registers) and live words encoded from the meter's state,
// scale factors chosen so every value fits its register.
import { encodeRaw, encodeString, isNotAvailable, decodeRaw } from './codec.ts';
import {
  RANGE_TABLE,
  WORDS_PER_TYPE,
  isModelPoint,
  usesSunSpec,
  type AddressRange,
  type DeviceDefinition,
  type FunctionCode,
  type IdentifyCheckDef,
} from './definition.ts';
import { identifyWords } from './definition-rules.ts';
import { encodeValue, MAX_SCALE_EXPONENT } from './decoder.ts';
import { checkAddress, mergeRanges, modelsUsed, resolveMap, type RegisterMap, type ResolvedRegister } from './register-map.ts';
import { COMMON_MODEL_ID, COMMON_STRINGS, MODEL_LENGTHS, SUNSPEC_BASE_ADDRESSES, SUNSPEC_END_ID, SUNSPEC_MARKER, type SunSpecLayout } from './sunspec.ts';

/** The electrical state a simulated device encodes (MeterSnapshot has these fields). */
export interface SimulatedState {
  powerW: number;
  importKWh: number;
  exportKWh: number;
  voltageV: number;
  currentA: number;
  frequencyHz: number;
}

/** How a simulated SunSpec device lays out its model chain and names itself. */
export interface SimulatedSunSpec {
  /** Marker address; default the definition's first base address, else 40000. */
  base?: number;
  /** Models placed right after the common model that the definition does not read (e.g. a vendor model). */
  extraModels?: { id: number; length: number }[];
  manufacturer?: string;
  model?: string;
  version?: string;
  serial?: string;
}

type Words = Map<FunctionCode, Map<number, number>>;

export interface RegisterImage {
  layout: SunSpecLayout | undefined;
  map: RegisterMap;
  /** Addresses answered per function code, sorted, touching ranges merged. */
  served: Map<FunctionCode, AddressRange[]>;
  /** Word at an address for a state: live value, else fixed word, else 0 (documented but not simulated). */
  words(state: SimulatedState): (functionCode: FunctionCode, address: number) => number;
}

/** The chain a simulated SunSpec device serves: common model 1, any extra models, then the models the definition reads. */
export function simulatedLayout(def: DeviceDefinition, sim: SimulatedSunSpec = {}): SunSpecLayout | undefined {
  if (!usesSunSpec(def)) return undefined;
  const base = sim.base ?? def.sunspec?.baseAddresses?.[0] ?? SUNSPEC_BASE_ADDRESSES[0] ?? 40000;
  const chain: { id: number; length: number }[] = [{ id: COMMON_MODEL_ID, length: MODEL_LENGTHS[COMMON_MODEL_ID] ?? 66 }, ...(sim.extraModels ?? [])];
  for (const id of modelsUsed(def)) {
    if (chain.some((m) => m.id === id)) continue;
    chain.push({ id, length: MODEL_LENGTHS[id] ?? pointsEnd(def, id) });
  }
  let address = base + 2;
  const models = chain.map(({ id, length }) => {
    const m = { id, address, length };
    address += 2 + length;
    return m;
  });
  return { base, models };
}

/** For a model the simulator has no length for: just past the last register the definition uses in it. */
function pointsEnd(def: DeviceDefinition, id: number): number {
  let end = 1;
  for (const reg of def.registers) {
    if (reg.model !== id) continue;
    end = Math.max(end, (reg.offset ?? 0) + WORDS_PER_TYPE[reg.dataType], (reg.scaleFactor?.offset ?? 0) + 1);
  }
  for (const check of def.identification?.registers ?? []) {
    if (check.model === id) end = Math.max(end, (check.offset ?? 0) + identifyWords(check));
  }
  return end;
}

function put(words: Words, fc: FunctionCode, address: number, values: readonly number[]): void {
  let table = words.get(fc);
  if (table === undefined) {
    table = new Map();
    words.set(fc, table);
  }
  values.forEach((w, i) => table.set(address + i, w));
}

/** The value a check's register holds on the simulated device. */
function checkWords(check: IdentifyCheckDef): number[] {
  const value = check.example ?? check.oneOf?.[0] ?? 0;
  if (check.dataType === 'string') return encodeString(String(value), identifyWords(check));
  return encodeRaw(check.dataType, 'big', Number(value));
}

function fixedWords(def: DeviceDefinition, layout: SunSpecLayout | undefined, sim: SimulatedSunSpec): Words {
  const words: Words = new Map();
  if (layout !== undefined) {
    put(words, 3, layout.base, SUNSPEC_MARKER);
    for (const m of layout.models) put(words, 3, m.address, [m.id, m.length]);
    const last = layout.models.at(-1);
    put(words, 3, last === undefined ? layout.base + 2 : last.address + 2 + last.length, [SUNSPEC_END_ID, 0]);
    const common = layout.models.find((m) => m.id === COMMON_MODEL_ID);
    if (common !== undefined) {
      const text = { manufacturer: sim.manufacturer ?? 'GridTokenX', model: sim.model ?? def.id, options: '', version: sim.version ?? 'sim-1', serial: sim.serial ?? `SIM-${def.id}` };
      for (const [key, [offset, count]] of Object.entries(COMMON_STRINGS)) {
        put(words, 3, common.address + 2 + offset, encodeString(text[key as keyof typeof text], count));
      }
      put(words, 3, common.address + 2 + 64, [1]); // DA: the device's Modbus address
    }
  }
  for (const check of def.identification?.registers ?? []) put(words, check.functionCode, checkAddress(def, check, layout), checkWords(check));
  return words;
}

/** Addresses the device answers: documented ranges (or the registers it maps), plus its SunSpec chain. */
export function servedRanges(def: DeviceDefinition, layout?: SunSpecLayout): Map<FunctionCode, AddressRange[]> {
  const out = new Map<FunctionCode, AddressRange[]>();
  const map = resolveMap(def, layout);
  for (const fc of [3, 4] as const) {
    const listed: AddressRange[] = [];
    if (def.ranges !== undefined) {
      listed.push(...(def.ranges[RANGE_TABLE[fc]] ?? []));
    } else {
      for (const r of map.registers.filter((r) => r.functionCode === fc)) {
        listed.push([r.address, r.address + WORDS_PER_TYPE[r.dataType] - 1]);
        if (r.scaleFactor?.functionCode === fc) listed.push([r.scaleFactor.address, r.scaleFactor.address]);
      }
      for (const c of def.identification?.registers ?? []) {
        if (c.functionCode !== fc || isModelPoint(c)) continue;
        const a = c.address ?? 0;
        listed.push([a, a + identifyWords(c) - 1]);
      }
    }
    if (fc === 3 && layout !== undefined) {
      const last = layout.models.at(-1);
      listed.push([layout.base, (last === undefined ? layout.base + 2 : last.address + 2 + last.length) + 1]);
    }
    out.set(fc, mergeRanges(listed));
  }
  return out;
}

function valueOf(reg: ResolvedRegister, s: SimulatedState): number {
  switch (reg.quantity) {
    case 'importEnergy':
      return reg.unit === 'Wh' ? s.importKWh * 1000 : s.importKWh;
    case 'exportEnergy':
      return reg.unit === 'Wh' ? s.exportKWh * 1000 : s.exportKWh;
    case 'power':
      return reg.unit === 'kW' ? s.powerW / 1000 : s.powerW;
    case 'voltage':
    case 'voltageL2':
    case 'voltageL3':
      return s.voltageV; // a balanced supply
    case 'current':
      return s.currentA;
    case 'frequency':
      return s.frequencyHz;
  }
}

/** Encoded words, or undefined when the value does not fit (or would read as "not available"). */
function tryEncode(reg: ResolvedRegister, value: number, exponent: number): number[] | undefined {
  try {
    const words = encodeValue(reg, value, exponent);
    return isNotAvailable(reg.notAvailable, reg.dataType, decodeRaw(reg.dataType, reg.wordOrder, words)) ? undefined : words;
  } catch (err) {
    if (err instanceof RangeError) return undefined;
    throw err;
  }
}

/**
 * Live words for a state. Registers sharing a scale factor get one exponent, the smallest
 * (finest) at which all their values fit, as a device picking its resolution would.
 */
function liveWords(map: RegisterMap, state: SimulatedState): Words {
  const words: Words = new Map();
  const groups = new Map<string, ResolvedRegister[]>();
  for (const reg of map.registers) {
    if (reg.scaleFactor === undefined) {
      put(words, reg.functionCode, reg.address, encodeValue(reg, valueOf(reg, state)));
      continue;
    }
    const key = `${reg.scaleFactor.functionCode}:${reg.scaleFactor.address}`;
    groups.set(key, [...(groups.get(key) ?? []), reg]);
  }
  for (const regs of groups.values()) {
    const sf = regs[0]?.scaleFactor;
    if (sf === undefined) continue;
    let placed = false;
    for (let exponent = -MAX_SCALE_EXPONENT; exponent <= MAX_SCALE_EXPONENT && !placed; exponent++) {
      const encoded = regs.map((reg) => tryEncode(reg, valueOf(reg, state), exponent));
      if (encoded.some((w) => w === undefined)) continue;
      regs.forEach((reg, i) => put(words, reg.functionCode, reg.address, encoded[i] ?? []));
      put(words, sf.functionCode, sf.address, [exponent & 0xffff]);
      placed = true;
    }
    if (!placed) throw new RangeError(`${map.definition.id}: ${regs.map((r) => r.quantity).join(', ')} fit no scale factor in ±${MAX_SCALE_EXPONENT}`);
  }
  return words;
}

export function buildImage(def: DeviceDefinition, sim: SimulatedSunSpec = {}): RegisterImage {
  const layout = simulatedLayout(def, sim);
  const map = resolveMap(def, layout);
  const fixed = fixedWords(def, layout, sim);
  return {
    layout,
    map,
    served: servedRanges(def, layout),
    words(state) {
      const live = liveWords(map, state);
      return (fc, address) => live.get(fc)?.get(address) ?? fixed.get(fc)?.get(address) ?? 0;
    },
  };
}

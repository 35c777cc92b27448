// A definition with every register at an absolute address: SunSpec points placed using the
// layout discovered on the device, scale factors located, and the address ranges one block
// read may span (the documented ranges, or the SunSpec models in use).
import {
  isModelPoint,
  type AddressRange,
  type DataType,
  type DeviceDefinition,
  type FunctionCode,
  type IdentifyCheckDef,
  type NotAvailableConvention,
  type Quantity,
  type Unit,
  type WordOrder,
} from './definition.ts';
import { findModel, pointAddress, SunSpecError, type SunSpecLayout, type SunSpecModel } from './sunspec.ts';

export interface ResolvedRegister {
  quantity: Quantity;
  functionCode: FunctionCode;
  address: number;
  dataType: DataType;
  wordOrder: WordOrder;
  scale: number;
  unit: Unit;
  scaleFactor?: { functionCode: FunctionCode; address: number };
  /** Register contents meaning "no value". */
  notAvailable?: NotAvailableConvention;
}

export interface RegisterMap {
  definition: DeviceDefinition;
  registers: ResolvedRegister[];
  /** SunSpec models the registers sit in; each read re-checks their ID and length words. */
  models: SunSpecModel[];
  /** Per function code, sorted ranges one read may cover; gaps outside them are never bridged. */
  readable: Map<FunctionCode, AddressRange[]>;
}

/** The model a SunSpec point sits in, or a SunSpecError naming what is missing. */
function modelOf(def: DeviceDefinition, layout: SunSpecLayout | undefined, id: number): SunSpecModel {
  if (layout === undefined) {
    throw new SunSpecError('missing-model', `${def.id} has SunSpec points: discover the device's model layout first (createDecoder does)`);
  }
  const model = findModel(layout, id);
  if (model === undefined) {
    throw new SunSpecError('missing-model', `${def.id}: SunSpec model ${id} is not in the device's chain at ${layout.base}`);
  }
  return model;
}

/** Sorted, touching ranges merged: a read across the seam of two adjacent ranges stays inside the map. */
export function mergeRanges(ranges: readonly AddressRange[]): AddressRange[] {
  const sorted = ranges.map(([a, b]): AddressRange => [a, b]).sort((x, y) => x[0] - y[0]);
  const merged: AddressRange[] = [];
  for (const [a, b] of sorted) {
    const prev = merged[merged.length - 1];
    if (prev !== undefined && a <= prev[1] + 1) prev[1] = Math.max(prev[1], b);
    else merged.push([a, b]);
  }
  return merged;
}

/** Places every register of `def`; SunSpec points need the device's `layout`. */
export function resolveMap(def: DeviceDefinition, layout?: SunSpecLayout): RegisterMap {
  const models: SunSpecModel[] = [];
  const registers = def.registers.map((reg): ResolvedRegister => {
    const { quantity, functionCode, dataType, wordOrder, scale, unit } = reg;
    if (isModelPoint(reg)) {
      const model = modelOf(def, layout, reg.model ?? 0);
      if (!models.includes(model)) models.push(model);
      const sfOffset = reg.scaleFactor?.offset;
      return {
        quantity,
        functionCode,
        address: pointAddress(model, reg.offset ?? 0),
        dataType,
        wordOrder,
        scale,
        unit,
        ...(sfOffset === undefined ? {} : { scaleFactor: { functionCode: 3, address: pointAddress(model, sfOffset) } }),
        notAvailable: def.notAvailable ?? 'sunspec',
      };
    }
    const sf = reg.scaleFactor;
    return {
      quantity,
      functionCode,
      address: reg.address ?? 0,
      dataType,
      wordOrder,
      scale,
      unit,
      ...(sf?.address === undefined ? {} : { scaleFactor: { functionCode: sf.functionCode ?? functionCode, address: sf.address } }),
      ...(def.notAvailable === undefined ? {} : { notAvailable: def.notAvailable }),
    };
  });

  // Documented ranges, plus each SunSpec model in use (header included) as a range of its own:
  // a model is readable in one go, but a read that bridges into the next model is not guaranteed.
  const readable = new Map<FunctionCode, AddressRange[]>();
  readable.set(4, mergeRanges(def.ranges?.input ?? []));
  const modelRanges = models.map((m): AddressRange => [m.address, m.address + 1 + m.length]);
  readable.set(3, [...mergeRanges(def.ranges?.holding ?? []), ...modelRanges].sort((x, y) => x[0] - y[0]));
  return { definition: def, registers, models, readable };
}

/** Absolute address of an identification register (SunSpec points need the layout). */
export function checkAddress(def: DeviceDefinition, check: IdentifyCheckDef, layout?: SunSpecLayout): number {
  if (!isModelPoint(check)) return check.address ?? 0;
  return pointAddress(modelOf(def, layout, check.model ?? 0), check.offset ?? 0);
}

/** SunSpec model IDs a definition's registers and identification use, in order of first use. */
export function modelsUsed(def: DeviceDefinition): number[] {
  const ids: number[] = [];
  for (const loc of [...def.registers, ...(def.identification?.registers ?? [])]) {
    if (loc.model !== undefined && !ids.includes(loc.model)) ids.push(loc.model);
  }
  return ids;
}


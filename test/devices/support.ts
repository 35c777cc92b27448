// Shared by the device tests: a paused simulator per definition and what "the same value,
// within the register's resolution" means for each quantity.
import type { DeviceDefinition, Quantity } from '../../devices/definition.ts';
import { READING_FACTOR, READING_FIELD, type DecodedReading } from '../../devices/decoder.ts';
import { resolveMap } from '../../devices/register-map.ts';
import { MeterSimulator, type MeterSimulatorOptions, type MeterSnapshot } from '../../devices/simulator.ts';

export const NOON_BANGKOK = Date.UTC(2025, 5, 15, 5, 0);
export const EVENING_BANGKOK = Date.UTC(2025, 5, 15, 12, 30);

/** A frozen simulator: every read sees one instant. */
export function pausedSimulator(definition: DeviceDefinition, extra: Partial<MeterSimulatorOptions> = {}): MeterSimulator {
  const sim = new MeterSimulator({
    definition,
    profile: 'prosumer',
    seed: 7,
    clock: () => NOON_BANGKOK,
    initialImportKWh: 4321.5,
    initialExportKWh: 765.25,
    ...extra,
  });
  sim.pause();
  return sim;
}

/** The snapshot in DecodedReading's integer units (unrounded). */
export function expectedReading(snap: MeterSnapshot): Record<keyof DecodedReading, number> {
  return {
    importWh: snap.importKWh * 1000,
    exportWh: snap.exportKWh * 1000,
    powerW: snap.powerW,
    voltageMilliV: snap.voltageV * 1000,
    voltageL2MilliV: snap.voltageV * 1000,
    voltageL3MilliV: snap.voltageV * 1000,
    currentMilliA: snap.currentA * 1000,
    frequencyMilliHz: snap.frequencyHz * 1000,
  };
}

/**
 * Largest difference between a decoded quantity and the exact value: half a raw step (float32:
 * half an ulp; integers: |scale| × 10^sf, the scale factor read from the simulator) plus the
 * final rounding to an integer.
 */
export function tolerance(sim: MeterSimulator, quantity: Quantity, exact: number): number {
  const map = resolveMap(sim.definition, sim.sunspecLayout);
  const reg = map.registers.find((r) => r.quantity === quantity);
  if (reg === undefined) return 0;
  const factor = READING_FACTOR[reg.unit];
  if (reg.dataType === 'float32') return Math.abs(exact) * 2 ** -24 + 0.5;
  let exponent = 0;
  if (reg.scaleFactor !== undefined) {
    const w = sim.registers(reg.scaleFactor.functionCode, reg.scaleFactor.address, 1)[0] ?? 0;
    exponent = w >= 0x8000 ? w - 0x10000 : w;
  }
  return (Math.abs(reg.scale) * 10 ** exponent * factor) / 2 + 0.5 + 1e-9 * Math.abs(exact);
}

/** Asserts every mapped quantity of `reading` is the snapshot's within its register resolution; returns the fields checked. */
export function withinResolution(sim: MeterSimulator, reading: DecodedReading, snap: MeterSnapshot): string[] {
  const exact = expectedReading(snap);
  const problems: string[] = [];
  const checked: string[] = [];
  for (const reg of sim.definition.registers) {
    const field = READING_FIELD[reg.quantity];
    const got = reading[field];
    const want = exact[field];
    const tol = tolerance(sim, reg.quantity, want);
    checked.push(field);
    if (got === undefined || Math.abs(got - want) > tol) problems.push(`${field}: got ${got}, want ${want} ± ${tol}`);
  }
  for (const q of sim.definition.notMeasured ?? []) {
    const field = READING_FIELD[q];
    if (reading[field] !== 0 || exact[field] !== 0) problems.push(`${field} is not measured: got ${reading[field]}, snapshot ${exact[field]}`);
  }
  if (problems.length > 0) throw new Error(`${sim.definition.id}: ${problems.join('; ')}`);
  return checked;
}

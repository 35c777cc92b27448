import type { DecodedReading } from '../devices/decoder.ts';
import type { MeterRole } from '../protocol/index.ts';

/**
 * What an installer should look at in one reading (`gtx gateway test`): values in the units a
 * person reads, and the wiring mistakes a reading shows — a current transformer on backwards
 * (power flowing the wrong way for the meter's role) or a phase without voltage.
 */
const PHASE_PRESENT_V = 150;
const PHASE_MISSING_V = 50;
/** Power below this is noise (a meter's standby reading); above it the sign means something. */
const SIGNIFICANT_W = 20;

export function describeReading(r: DecodedReading): string {
  const parts = [`import ${(r.importWh / 1000).toFixed(3)} kWh`, `export ${(r.exportWh / 1000).toFixed(3)} kWh`, `power ${r.powerW} W`];
  if (r.voltageMilliV !== undefined) {
    const phases = [r.voltageL2MilliV, r.voltageL3MilliV].filter((v): v is number => v !== undefined);
    parts.push(`voltage ${(r.voltageMilliV / 1000).toFixed(1)} V${phases.length ? ` (L2 ${(phases[0]! / 1000).toFixed(1)} V${phases[1] !== undefined ? `, L3 ${(phases[1] / 1000).toFixed(1)} V` : ''})` : ''}`);
  }
  if (r.currentMilliA !== undefined) parts.push(`current ${(r.currentMilliA / 1000).toFixed(2)} A`);
  if (r.frequencyMilliHz !== undefined) parts.push(`frequency ${(r.frequencyMilliHz / 1000).toFixed(2)} Hz`);
  return parts.join(', ');
}

export function wiringWarnings(r: DecodedReading, role: MeterRole): string[] {
  const out: string[] = [];
  if (role === 'consumption' && r.powerW < -SIGNIFICANT_W) {
    out.push(`power is ${r.powerW} W (exporting) on a consumption-only meter: is the current transformer on backwards, or is the role wrong?`);
  }
  if (role === 'generation' && r.powerW > SIGNIFICANT_W) {
    out.push(`power is +${r.powerW} W (importing) on a generation meter: is the current transformer on backwards, or is the role wrong?`);
  }
  const volts = [
    ['L1', r.voltageMilliV],
    ['L2', r.voltageL2MilliV],
    ['L3', r.voltageL3MilliV],
  ].filter((p): p is [string, number] => p[1] !== undefined);
  if (volts.length > 1 && volts.some(([, v]) => v / 1000 >= PHASE_PRESENT_V)) {
    for (const [phase, v] of volts) {
      if (v / 1000 < PHASE_MISSING_V) out.push(`${phase} shows ${(v / 1000).toFixed(1)} V while another phase is live: a missing phase or a loose voltage tap?`);
    }
  }
  return out;
}

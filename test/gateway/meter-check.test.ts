import { describe, expect, it } from 'vitest';
import { describeReading, wiringWarnings } from '../../gateway/meter-check.ts';

describe('what gtx gateway test says about a reading', () => {
  const r = { importWh: 1234567, exportWh: 890, powerW: 1500, voltageMilliV: 230_100, voltageL2MilliV: 229_800, voltageL3MilliV: 231_000, currentMilliA: 6520, frequencyMilliHz: 50_010 };
  it('shows values in kWh, W, V, A and Hz', () => {
    expect(describeReading(r)).toBe('import 1234.567 kWh, export 0.890 kWh, power 1500 W, voltage 230.1 V (L2 229.8 V, L3 231.0 V), current 6.52 A, frequency 50.01 Hz');
    expect(describeReading({ importWh: 0, exportWh: 0, powerW: 0 })).toBe('import 0.000 kWh, export 0.000 kWh, power 0 W');
  });
  it('warns of a reversed current transformer for the role, and of a missing phase', () => {
    expect(wiringWarnings(r, 'consumption')).toEqual([]);
    expect(wiringWarnings({ ...r, powerW: -800 }, 'consumption')).toEqual([expect.stringContaining('power is -800 W (exporting) on a consumption-only meter')]);
    expect(wiringWarnings({ ...r, powerW: -800 }, 'bidirectional')).toEqual([]);
    expect(wiringWarnings({ ...r, powerW: -800 }, 'generation')).toEqual([]);
    expect(wiringWarnings(r, 'generation')).toEqual([expect.stringContaining('power is +1500 W (importing) on a generation meter')]);
    expect(wiringWarnings({ ...r, powerW: -5 }, 'consumption')).toEqual([]); // standby noise
    expect(wiringWarnings({ ...r, voltageL3MilliV: 0 }, 'bidirectional')).toEqual(['L3 shows 0.0 V while another phase is live: a missing phase or a loose voltage tap?']);
    // A single-phase meter, or all phases dead (the meter is not on the mains at all): no phase warning.
    expect(wiringWarnings({ ...r, voltageL2MilliV: undefined, voltageL3MilliV: undefined, voltageMilliV: 0 }, 'bidirectional')).toEqual([]);
  });
});

// SunSpec: finding the marker, walking the model chain, reading points relative to their model,
// scale factors and "not implemented" values, and keeping the discovered layout between polls.
import { describe, expect, it } from 'vitest';
import { getDefinition } from '../../devices/catalog.ts';
import { validateDefinition, type DeviceDefinition } from '../../devices/definition.ts';
import { createDecoder, DecodeError, decodeRegisters } from '../../devices/decoder.ts';
import type { RegisterReader } from '../../devices/reader.ts';
import { ModbusException, MODBUS_EXCEPTION, type MeterSimulator } from '../../devices/simulator.ts';
import { discoverSunSpec, pointAddress, SunSpecError, SUNSPEC_MARKER, type SunSpecLayout } from '../../devices/sunspec.ts';
import { pausedSimulator } from './support.ts';

const inverter = () => getDefinition('sunspec-inverter-103');
const meter = () => getDefinition('sunspec-meter-203');
/** A copy that is a new object: decodeRegisters keeps one layout per definition object. */
const fresh = (def: DeviceDefinition) => validateDefinition(structuredClone(def), 'copy');

function counting(read: RegisterReader): { read: RegisterReader; calls: string[] } {
  const calls: string[] = [];
  return { calls, read: (fc, a, n) => (calls.push(`${fc}:${a}+${n}`), read(fc, a, n)) };
}

const over = (sim: MeterSimulator): RegisterReader => (fc, a, n) => sim.registers(fc, a, n);

/** The simulator's registers with some words replaced (address → word, holding registers). */
function patched(sim: MeterSimulator, words: Map<number, number>): RegisterReader {
  return (fc, a, n) => sim.registers(fc, a, n).map((w, i) => (fc === 3 ? (words.get(a + i) ?? w) : w));
}

/** A device made of holding-register words only; anything else is "illegal data address". */
function wordsDevice(words: Map<number, number>): RegisterReader {
  return (fc, a, n) => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const w = words.get(a + i);
      if (fc !== 3 || w === undefined) throw new ModbusException(MODBUS_EXCEPTION.illegalDataAddress, `no register ${a + i}`);
      out.push(w);
    }
    return out;
  };
}

function model(layout: SunSpecLayout | undefined, id: number) {
  const m = layout?.models.find((x) => x.id === id);
  if (m === undefined) throw new Error(`model ${id} not in layout`);
  return m;
}

describe('SunSpec discovery', () => {
  it('finds "SunS" at holding register 40000 and walks the chain: common model 1, then model 103', async () => {
    const sim = pausedSimulator(inverter());
    expect(sim.registers(3, 40000, 2)).toEqual([...SUNSPEC_MARKER]);
    const { read, calls } = counting(over(sim));
    const layout = await discoverSunSpec(read);
    expect(layout).toEqual({
      base: 40000,
      models: [
        { id: 1, address: 40002, length: 66 },
        { id: 103, address: 40070, length: 50 },
      ],
    });
    // Marker + first header in one request, then one per header; the 0xFFFF end model stops the walk.
    expect(calls).toEqual(['3:40000+4', '3:40070+2', '3:40122+2']);
    expect(sim.registers(3, 40122, 2)).toEqual([0xffff, 0]);
  });

  it('stops walking once the models a definition needs are found', async () => {
    const { read, calls } = counting(over(pausedSimulator(meter())));
    const layout = await discoverSunSpec(read, { want: [203] });
    expect(layout.models.map((m) => m.id)).toEqual([1, 203]);
    expect(calls).toHaveLength(2);
  });

  it.each([0, 50000])('falls back to the marker at %i when 40000 answers with an exception', async (base) => {
    const sim = pausedSimulator(inverter(), { sunspec: { base } });
    const { read, calls } = counting(over(sim));
    const decoder = createDecoder(inverter());
    const reading = await decoder.read(read);
    expect(decoder.layout?.base).toBe(base);
    expect(model(decoder.layout, 103).address).toBe(base + 70);
    expect(calls[0]).toBe('3:40000+4');
    expect(reading).toEqual(sim.decoded());
  });

  it('skips a model it does not know (a vendor model between common and inverter) and reads points relative to 103', async () => {
    const sim = pausedSimulator(inverter(), { sunspec: { extraModels: [{ id: 64110, length: 37 }, { id: 120, length: 26 }] } });
    const decoder = createDecoder(inverter());
    const reading = await decoder.read(over(sim));
    expect(decoder.layout?.models.map((m) => [m.id, m.address])).toEqual([
      [1, 40002],
      [64110, 40070],
      [120, 40109],
      [103, 40137],
    ]);
    expect(reading).toEqual(sim.decoded());
    // W (offset 12) and W_SF (offset 13) sit 2 + 12 and 2 + 13 registers after 103's ID word.
    expect(decoder.plan()).toEqual([{ functionCode: 3, address: 40137, count: 2 + 25 }]);
    expect(pointAddress(model(decoder.layout, 103), 12)).toBe(40151);
  });

  it('reports a missing marker clearly, naming every address tried', async () => {
    const sim = pausedSimulator(getDefinition('sdm120'));
    const err = await discoverSunSpec(over(sim)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SunSpecError);
    expect(err).toMatchObject({ problem: 'no-marker' });
    expect((err as Error).message).toBe(
      'no SunSpec marker "SunS" (0x5375 0x6e53) at holding register 40000, 0, 50000 (40000: exception 2 (illegal data address); 0: 0x0000 0x0000; 50000: exception 2 (illegal data address)); the device does not speak SunSpec at these addresses',
    );
    await expect(createDecoder(inverter()).read(over(sim))).rejects.toThrow(/no SunSpec marker "SunS"/);
  });

  it('reports a model the device does not have, listing the chain it found', async () => {
    const sim = pausedSimulator(inverter());
    await expect(createDecoder(meter()).read(over(sim))).rejects.toThrow(
      'SunSpec model 203 not found in the chain at 40000 (it has 1@40002, 103@40070); wrong device or definition',
    );
  });

  it('accepts a chain without the 0xFFFF end model (an exception where the next header would be)', async () => {
    const words = new Map<number, number>([
      [40000, 0x5375],
      [40001, 0x6e53],
      [40002, 1],
      [40003, 2],
      [40004, 0],
      [40005, 0],
      [40006, 201],
      [40007, 3],
      [40008, 0],
      [40009, 0],
      [40010, 0],
    ]);
    const layout = await discoverSunSpec(wordsDevice(words));
    expect(layout.models).toEqual([
      { id: 1, address: 40002, length: 2 },
      { id: 201, address: 40006, length: 3 },
    ]);
  });

  it('refuses a chain that runs past the address space, and errors that are not Modbus exceptions propagate', async () => {
    const corrupt = wordsDevice(new Map([[40000, 0x5375], [40001, 0x6e53], [40002, 1], [40003, 40000]]));
    await expect(discoverSunSpec(corrupt)).rejects.toMatchObject({ problem: 'bad-chain' });
    const down: RegisterReader = () => Promise.reject(new Error('Timed out'));
    await expect(discoverSunSpec(down)).rejects.toThrow('Timed out');
  });
});

describe('SunSpec decoding', () => {
  it('walks the chain once: later polls read only the data block (with the model header re-checked in it)', async () => {
    const sim = pausedSimulator(meter());
    const { read, calls } = counting(over(sim));
    const decoder = createDecoder(meter());
    await decoder.read(read);
    expect(calls).toEqual(['3:40000+4', '3:40070+2', '3:40070+55']);
    calls.length = 0;
    await decoder.read(read);
    expect(calls).toEqual(['3:40070+55']);
  });

  it('decodeRegisters keeps the layout per definition, so a poller calling it every cycle does not re-walk', async () => {
    const def = fresh(meter());
    const sim = pausedSimulator(def);
    const { read, calls } = counting(over(sim));
    expect(await decodeRegisters(def, read)).toEqual(sim.decoded());
    expect(calls).toHaveLength(3);
    calls.length = 0;
    await decodeRegisters(def, async (fc, a, n) => read(fc, a, n)); // a new callback each poll, as the poller makes
    expect(calls).toHaveLength(1);
  });

  it('discovers again when the device layout changed under the cached one', async () => {
    const def = fresh(inverter());
    const decoder = createDecoder(def);
    await decoder.read(over(pausedSimulator(def)));
    expect(model(decoder.layout, 103).address).toBe(40070);
    // Same definition, another device: a vendor model now sits before the inverter model.
    const moved = pausedSimulator(def, { sunspec: { extraModels: [{ id: 64120, length: 10 }] } });
    const { read, calls } = counting(over(moved));
    expect(await decoder.read(read)).toEqual(moved.decoded());
    expect(model(decoder.layout, 103).address).toBe(40082);
    expect(calls).toEqual(['3:40070+27', '3:40000+4', '3:40070+2', '3:40082+2', '3:40082+27']);
  });

  it('applies scale factors: value × 10^sf, negative and positive exponents, shared by import and export', async () => {
    const sim = pausedSimulator(meter());
    const m203 = model(sim.sunspecLayout, 203);
    const at = (offset: number) => pointAddress(m203, offset);
    const words = new Map<number, number>([
      [at(16), 1234], // W
      [at(20), 1], // W_SF = 1 → 12340 W
      [at(6), 23012], // PhVphA
      [at(13), 0xfffe], // V_SF = -2 → 230.12 V
      [at(14), 5002], // Hz
      [at(15), 0xfffd], // Hz_SF = -3 → 5.002 Hz (implausible, but exact)
      [at(36), 0], // TotWhExp hi
      [at(37), 77], // TotWhExp lo
      [at(44), 0x0001], // TotWhImp hi
      [at(45), 0x0000], // TotWhImp lo = 65536
      [at(52), 3], // TotWh_SF = 3 → kWh steps
    ]);
    const reading = await createDecoder(meter()).read(patched(sim, words));
    expect(reading).toMatchObject({ powerW: 12340, voltageMilliV: 230120, frequencyMilliHz: 5002, exportWh: 77_000, importWh: 65_536_000 });
  });

  it('treats SunSpec "not implemented" values as missing: optional quantities are left out, required ones fail clearly', async () => {
    const sim = pausedSimulator(inverter());
    const m103 = model(sim.sunspecLayout, 103);
    const at = (offset: number) => pointAddress(m103, offset);
    const decode = (words: [number, number][]) => createDecoder(inverter()).read(patched(sim, new Map(words)));

    const partial = await decode([
      [at(8), 0xffff], // PhVphA (uint16) not implemented
      [at(15), 0x8000], // Hz_SF not implemented
    ]);
    expect(partial).not.toHaveProperty('voltageMilliV');
    expect(partial).not.toHaveProperty('frequencyMilliHz');
    expect(partial).toMatchObject({ importWh: 0, powerW: sim.decoded().powerW, currentMilliA: sim.decoded().currentMilliA });

    const noPower = await decode([[at(12), 0x8000]]).catch((e: unknown) => e);
    expect(noPower).toBeInstanceOf(DecodeError);
    expect(noPower).toMatchObject({ problem: 'not-available', quantity: 'power', address: at(12) });
    expect((noPower as Error).message).toBe(
      `sunspec-inverter-103: power at holding register 0x${at(12).toString(16)} (${at(12)}) holds 0x8000, the "not available" value; a reading needs power, and this device does not report it`,
    );
    await expect(decode([[at(24), 0x8000]])).rejects.toThrow(/exportEnergy .* has its scale factor at \d+ not implemented \(0x8000\); a reading needs exportEnergy/);
    await expect(decode([[at(22), 0xffff], [at(23), 0xffff]])).rejects.toMatchObject({ problem: 'not-available', quantity: 'exportEnergy' });
  });

  it('refuses a scale factor outside -10..10 as a misread register', async () => {
    const sim = pausedSimulator(inverter());
    const at = pointAddress(model(sim.sunspecLayout, 103), 13);
    await expect(createDecoder(inverter()).read(patched(sim, new Map([[at, 11]])))).rejects.toMatchObject({ problem: 'bad-scale-factor', quantity: 'power' });
    await expect(createDecoder(inverter()).read(patched(sim, new Map([[at, 0xfff5]])))).rejects.toThrow(/scale factor 10\^-11 .*-10\.\.10/);
  });

  it('reads the inverter power as export: generation (positive W) decodes negative, and import stays 0', async () => {
    const sim = pausedSimulator(inverter(), { profile: 'pv' });
    const reading = await createDecoder(inverter()).read(over(sim));
    const rawW = sim.registers(3, pointAddress(model(sim.sunspecLayout, 103), 12), 1)[0] ?? 0;
    expect(rawW).toBeGreaterThan(0);
    expect(rawW).toBeLessThan(0x8000);
    expect(reading.powerW).toBeLessThan(0);
    expect(reading.importWh).toBe(0);
  });
});

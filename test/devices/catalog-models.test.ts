// Every catalog model: its register map as the vendor documents it, the simulator's registers
// decoding back to the simulator's state, and the number of requests one reading takes.
import { describe, expect, it } from 'vitest';
import { getDefinition, listDefinitions } from '../../devices/catalog.ts';
import { isModelPoint, type DeviceDefinition, type RegisterDef } from '../../devices/definition.ts';
import { createDecoder, decodeRegisters, MAX_REGISTERS_PER_READ, planReads, READING_FIELD } from '../../devices/decoder.ts';
import type { RegisterReader } from '../../devices/reader.ts';
import { useModbus } from '../support/modbus.ts';
import { EVENING_BANGKOK, NOON_BANGKOK, pausedSimulator, withinResolution } from './support.ts';

/** How each register is read, compactly: "fc:address type order ×scale unit" or "model/offset …". */
function describe_(reg: RegisterDef): string {
  const at = isModelPoint(reg) ? `${reg.model}/${reg.offset}` : `${reg.functionCode}:0x${(reg.address ?? 0).toString(16).padStart(4, '0')}`;
  const sf = reg.scaleFactor === undefined ? '' : ` sf${reg.scaleFactor.offset ?? `0x${(reg.scaleFactor.address ?? 0).toString(16)}`}`;
  return `${at} ${reg.dataType} ${reg.wordOrder} ×${reg.scale} ${reg.unit}${sf}`;
}

const mapOf = (def: DeviceDefinition) => Object.fromEntries(def.registers.map((r) => [r.quantity, describe_(r)]));

// The vendor register maps, written out independently of the JSON files: a typo in either shows.
const FACTS: Record<string, Record<string, string>> = {
  'eastron-sdm120': {
    voltage: '4:0x0000 float32 big ×1 V',
    current: '4:0x0006 float32 big ×1 A',
    power: '4:0x000c float32 big ×1 W',
    frequency: '4:0x0046 float32 big ×1 Hz',
    importEnergy: '4:0x0048 float32 big ×1 kWh',
    exportEnergy: '4:0x004a float32 big ×1 kWh',
  },
  'eastron-sdm230': {
    voltage: '4:0x0000 float32 big ×1 V',
    current: '4:0x0006 float32 big ×1 A',
    power: '4:0x000c float32 big ×1 W',
    frequency: '4:0x0046 float32 big ×1 Hz',
    importEnergy: '4:0x0048 float32 big ×1 kWh',
    exportEnergy: '4:0x004a float32 big ×1 kWh',
  },
  'eastron-sdm630': {
    voltage: '4:0x0000 float32 big ×1 V',
    voltageL2: '4:0x0002 float32 big ×1 V',
    voltageL3: '4:0x0004 float32 big ×1 V',
    current: '4:0x0006 float32 big ×1 A',
    power: '4:0x0034 float32 big ×1 W',
    frequency: '4:0x0046 float32 big ×1 Hz',
    importEnergy: '4:0x0048 float32 big ×1 kWh',
    exportEnergy: '4:0x004a float32 big ×1 kWh',
  },
  'eastron-sdm72d': {
    voltage: '4:0x0000 float32 big ×1 V',
    voltageL2: '4:0x0002 float32 big ×1 V',
    voltageL3: '4:0x0004 float32 big ×1 V',
    current: '4:0x0006 float32 big ×1 A',
    power: '4:0x0034 float32 big ×1 W',
    frequency: '4:0x0046 float32 big ×1 Hz',
    importEnergy: '4:0x0048 float32 big ×1 kWh',
    exportEnergy: '4:0x004a float32 big ×1 kWh',
  },
  'abb-b23': {
    importEnergy: '3:0x5000 uint64 big ×0.01 kWh',
    exportEnergy: '3:0x5004 uint64 big ×0.01 kWh',
    voltage: '3:0x5b00 uint32 big ×0.1 V',
    voltageL2: '3:0x5b02 uint32 big ×0.1 V',
    voltageL3: '3:0x5b04 uint32 big ×0.1 V',
    current: '3:0x5b0c uint32 big ×0.01 A',
    power: '3:0x5b14 int32 big ×0.01 W',
    frequency: '3:0x5b2c uint16 big ×0.01 Hz',
  },
  'carlo-gavazzi-em24': {
    voltage: '3:0x0000 int32 little ×0.1 V',
    voltageL2: '3:0x0002 int32 little ×0.1 V',
    voltageL3: '3:0x0004 int32 little ×0.1 V',
    current: '3:0x000c int32 little ×0.001 A',
    power: '3:0x0028 int32 little ×0.1 W',
    frequency: '3:0x0033 uint16 big ×0.1 Hz',
    importEnergy: '3:0x0034 int32 little ×0.1 kWh',
    exportEnergy: '3:0x004e int32 little ×0.1 kWh',
  },
  'schneider-iem3155': {
    // Register numbers 3000, 3028, 3060, 3110, 3204, 3208 in the manual (1-based).
    current: '3:0x0bb7 float32 big ×1 A',
    voltage: '3:0x0bd3 float32 big ×1 V',
    voltageL2: '3:0x0bd5 float32 big ×1 V',
    voltageL3: '3:0x0bd7 float32 big ×1 V',
    power: '3:0x0bf3 float32 big ×1 kW',
    frequency: '3:0x0c25 float32 big ×1 Hz',
    importEnergy: '3:0x0c83 int64 big ×1 Wh',
    exportEnergy: '3:0x0c87 int64 big ×1 Wh',
  },
  'sunspec-inverter-103': {
    current: '103/1 uint16 big ×1 A sf4',
    voltage: '103/8 uint16 big ×1 V sf11',
    voltageL2: '103/9 uint16 big ×1 V sf11',
    voltageL3: '103/10 uint16 big ×1 V sf11',
    power: '103/12 int16 big ×-1 W sf13',
    frequency: '103/14 uint16 big ×1 Hz sf15',
    exportEnergy: '103/22 uint32 big ×1 Wh sf24',
  },
  'sunspec-meter-203': {
    current: '203/1 int16 big ×1 A sf4',
    voltage: '203/6 int16 big ×1 V sf13',
    voltageL2: '203/7 int16 big ×1 V sf13',
    voltageL3: '203/8 int16 big ×1 V sf13',
    frequency: '203/14 int16 big ×1 Hz sf15',
    power: '203/16 int16 big ×1 W sf20',
    exportEnergy: '203/36 uint32 big ×1 Wh sf52',
    importEnergy: '203/44 uint32 big ×1 Wh sf52',
  },
};

describe('catalog register maps', () => {
  it('has at least ten models, each with its vendor source', () => {
    const defs = listDefinitions();
    expect(defs.length).toBeGreaterThanOrEqual(10);
    for (const def of defs) expect(def.ranges?.source.length, def.id).toBeGreaterThan(40);
  });

  it.each(Object.entries(FACTS))('%s maps the vendor registers', (id, facts) => {
    expect(mapOf(getDefinition(id))).toEqual(facts);
  });

  it('B24 shares the B23 map; model 101 shares 103, and 201 shares 203, at their own model id', () => {
    expect(getDefinition('b24').registers).toEqual(getDefinition('b23').registers);
    const relabel = (def: DeviceDefinition, model: number) => def.registers.map((r) => ({ ...r, model }));
    // The single-phase models have no phases 2 and 3.
    const onePhase = (def: DeviceDefinition) => def.registers.filter((r) => r.quantity !== 'voltageL2' && r.quantity !== 'voltageL3');
    expect(relabel(getDefinition('sunspec-inverter-101'), 103)).toEqual(onePhase(getDefinition('sunspec-inverter-103')));
    expect(relabel(getDefinition('sunspec-meter-201'), 203)).toEqual(onePhase(getDefinition('sunspec-meter-203')));
    expect(getDefinition('sunspec-inverter-103').notMeasured).toEqual(['importEnergy']);
  });

  it('identifies models by their documented registers', () => {
    const checks = (id: string) => getDefinition(id).identification?.registers.map((c) => [c.address, c.dataType, c.oneOf ?? c.pattern]);
    expect(checks('sdm630')).toEqual([[0xfc02, 'uint16', [0x70, 0x79]]]);
    expect(checks('sdm72d')).toEqual([[0xfc02, 'uint16', [0x89, 0x87]]]);
    expect(checks('b23')).toEqual([[0x8960, 'string', '^B23']]);
    expect(checks('b24')).toEqual([[0x8960, 'string', '^B24']]);
    expect(checks('em24')).toEqual([[0x000b, 'uint16', [1648, 1649, 1650, 1651, 1652, 1653]]]);
    expect(checks('iem3155')).toEqual([[49, 'string', ['iEM3155']]]);
  });
});

/** A reader over the simulator that counts requests. */
function counting(sim: { registers: RegisterReader }): { read: RegisterReader; calls: string[] } {
  const calls: string[] = [];
  return { calls, read: (fc, a, n) => (calls.push(`${fc}:${a}+${n}`), sim.registers(fc, a, n)) };
}

// Requests per reading, once any SunSpec discovery is done; discovery costs 2 more (marker with
// the first model header, then the next header).
const REQUESTS: Record<string, number> = {
  'abb-b23': 2, // energies 0x5000-0x5007, instantaneous 0x5B00-0x5B2C
  'abb-b24': 2,
  'carlo-gavazzi-em24': 1, // 0x0000-0x004F
  'eastron-sdm120': 1, // 30001-30076 inside the documented 30001-30346
  'eastron-sdm230': 4, // only single parameters are documented: V, I, P, then Hz..export
  'eastron-sdm630': 1,
  'eastron-sdm72d': 3, // V+I, total power, Hz..export
  'schneider-iem3155': 2, // 3000-3111 meter data, 3204-3211 energies
  'sunspec-inverter-101': 1,
  'sunspec-inverter-103': 1,
  'sunspec-meter-201': 1,
  'sunspec-meter-203': 1,
};

describe.each(listDefinitions().map((d) => [d.id, d] as const))('%s', (id, def) => {
  it('decodes the simulator registers back to its state, within the register resolution', async () => {
    for (const [clock, profile] of [
      [NOON_BANGKOK, 'prosumer'],
      [EVENING_BANGKOK, 'household'],
      [NOON_BANGKOK, 'pv'],
    ] as const) {
      const sim = pausedSimulator(def, { clock: () => clock, profile });
      const reading = await createDecoder(def).read((fc, a, n) => sim.registers(fc, a, n));
      expect(reading).toEqual(sim.decoded());
      expect(withinResolution(sim, reading, sim.snapshot())).toEqual(def.registers.map((r) => READING_FIELD[r.quantity]));
    }
  });

  it(`reads in ${REQUESTS[id]} request(s) per reading, each within 125 registers`, async () => {
    const sim = pausedSimulator(def);
    const { read, calls } = counting(sim);
    const decoder = createDecoder(def);
    await decoder.read(read);
    const discovery = decoder.layout === undefined ? 0 : 2;
    expect(calls).toHaveLength((REQUESTS[id] ?? 0) + discovery);
    calls.length = 0;
    await decoder.read(read);
    expect(calls).toHaveLength(REQUESTS[id] ?? 0);
    for (const block of decoder.plan()) expect(block.count).toBeLessThanOrEqual(MAX_REGISTERS_PER_READ);
    if (decoder.layout === undefined) expect(decoder.plan()).toEqual(planReads(def));
  });
});

describe('catalog models over Modbus TCP (simulator + modbus-serial client)', () => {
  const { serve, connect } = useModbus();
  for (const id of ['abb-b23', 'carlo-gavazzi-em24', 'schneider-iem3155', 'eastron-sdm72d', 'sunspec-inverter-103', 'sunspec-meter-203']) {
    it(`${id}: a gateway-style decodeRegisters over TCP gets what the simulator shows`, async () => {
      const def = getDefinition(id);
      const { sim, port } = await serve({ definition: def, profile: id.includes('inverter') ? 'pv' : 'prosumer', seed: 3, clock: () => NOON_BANGKOK, initialImportKWh: 1234.56, initialExportKWh: 78.9 });
      sim.pause();
      const client = await connect(port);
      let requests = 0;
      // The poller's call shape: decodeRegisters(def, async (fc, address, count) => number[]).
      const poll = () =>
        decodeRegisters(def, async (fc, address, count) => {
          requests++;
          return (fc === 4 ? await client.readInputRegisters(address, count) : await client.readHoldingRegisters(address, count)).data;
        });
      const reading = await poll();
      expect(reading).toEqual(sim.decoded());
      withinResolution(sim, reading, sim.snapshot());
      requests = 0;
      expect(await poll()).toEqual(reading);
      expect(requests).toBe(REQUESTS[id]); // a SunSpec chain is walked once per definition, not every poll
    });
  }
});

// identify(): every simulated catalog model is recognised as itself (the SDM120 and SDM230,
// which share a map and have no identification register documented, as an explained pair).
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { getDefinition, listDefinitions, loadDefinitionFile } from '../../devices/catalog.ts';
import { identify } from '../../devices/identify.ts';
import type { RegisterReader } from '../../devices/reader.ts';
import { useModbus } from '../support/modbus.ts';
import { NOON_BANGKOK, pausedSimulator } from './support.ts';

const GENERIC = fileURLToPath(new URL('../../devices/examples/generic-meter.toml', import.meta.url));
const generic = loadDefinitionFile(GENERIC);
const everything = [...listDefinitions(), generic];

const SAME_MAP = ['eastron-sdm120', 'eastron-sdm230'];

describe('identify() against the simulator of each model', () => {
  it.each(everything.map((d) => [d.id, d] as const))('%s', async (id, def) => {
    const sim = pausedSimulator(def);
    const result = await identify((fc, a, n) => sim.registers(fc, a, n), everything);
    if (SAME_MAP.includes(id)) {
      expect(result.best).toEqual(SAME_MAP);
      expect(result.ambiguity).toMatch(/^eastron-sdm120, eastron-sdm230: .*read energy and power from the same registers the same way, so any of them decodes this unit correctly/);
    } else {
      expect(result.best).toEqual([id]);
      expect(result.ambiguity).toBeUndefined();
    }
    const own = result.candidates.find((c) => c.id === id);
    expect(own?.verdict).toMatch(/identified|plausible/);
    expect(own?.evidence.length).toBeGreaterThan(0);
    // Few requests: shared registers are read once, and plausibility only runs when nothing identified itself.
    expect(result.reads).toBeLessThanOrEqual(12);
    expect(result.candidates.map((c) => c.id)).toEqual(everything.map((d) => d.id));
  });
});

describe('identify() evidence', () => {
  it('names what each identification register held', async () => {
    const sim = pausedSimulator(getDefinition('sdm72d'));
    const result = await identify((fc, a, n) => sim.registers(fc, a, n));
    const byId = Object.fromEntries(result.candidates.map((c) => [c.id, c]));
    expect(byId['eastron-sdm72d']).toEqual({ id: 'eastron-sdm72d', verdict: 'identified', evidence: ['holding 0xfc02 (meter code) = 137 (0x0089), one of 137, 135'] });
    expect(byId['eastron-sdm630']).toMatchObject({ verdict: 'rejected', evidence: ['holding 0xfc02 (meter code) = 137 (0x0089), not one of 112, 121'] });
    expect(byId['abb-b23']?.evidence).toEqual(['holding 0x8960 (type designation): exception 2 (illegal data address): not this model']);
    expect(byId['eastron-sdm120']).toEqual({ id: 'eastron-sdm120', verdict: 'not-probed', evidence: ['not probed: another candidate identified itself'] });
    // The meter code register is shared by the SDM630 and SDM72D definitions: read once.
    expect(result.reads).toBe(4);
  });

  it('reports the SunSpec chain and the common model strings', async () => {
    const sim = pausedSimulator(getDefinition('sunspec-meter-201'), { sunspec: { manufacturer: 'Acme', model: 'M-1', serial: 'SN42' } });
    const result = await identify((fc, a, n) => sim.registers(fc, a, n));
    expect(result.best).toEqual(['sunspec-meter-201']);
    const own = result.candidates.find((c) => c.id === 'sunspec-meter-201');
    expect(own?.evidence).toEqual(['SunSpec marker at 40000; models 1@40002, 201@40070', 'common model: manufacturer "Acme", model "M-1", serial "SN42"']);
    expect(result.candidates.find((c) => c.id === 'sunspec-meter-203')?.evidence).toContain('model 203 not in the chain: not this kind of device');
  });

  it('lists only the candidates it was given', async () => {
    const sim = pausedSimulator(getDefinition('b24'));
    const result = await identify((fc, a, n) => sim.registers(fc, a, n), [getDefinition('b23'), getDefinition('b24')]);
    expect(result.best).toEqual(['abb-b24']);
    expect(result.candidates.map((c) => [c.id, c.verdict])).toEqual([
      ['abb-b23', 'rejected'],
      ['abb-b24', 'identified'],
    ]);
    expect(result.candidates[0]?.evidence).toEqual(['holding 0x8960 (type designation) = "B24 312-100", not matching /^B23/']);
    expect(result.reads).toBe(1);
  });

  it('rejects a plausibility probe that reads implausible values, and finds nothing on a unit that fits no model', async () => {
    const sim = pausedSimulator(getDefinition('sdm120'), { clock: () => NOON_BANGKOK });
    // Everything the SDM120 answers reads 0 V and 0 Hz.
    const zeros: RegisterReader = (fc, a, n) => sim.registers(fc, a, n).map(() => 0);
    const result = await identify(zeros);
    expect(result.best).toEqual([]);
    expect(result.candidates.find((c) => c.id === 'eastron-sdm120')).toMatchObject({
      verdict: 'rejected',
      evidence: ['voltage at input 0x0000 = 0 V, not within 80-300 V', 'frequency at input 0x0046 = 0 Hz, not within 45-65 Hz'],
    });
  });

  it('fails clearly when the unit answers no request at all', async () => {
    const silent: RegisterReader = () => Promise.reject(new Error('Timed out'));
    await expect(identify(silent)).rejects.toThrow(/^the unit answered none of \d+ requests \(Timed out\); check the host, port and unit id$/);
  });
});

describe('identify() over Modbus TCP (modbus-serial client, real exceptions)', () => {
  const { serve, connect } = useModbus();
  for (const id of ['eastron-sdm630', 'carlo-gavazzi-em24', 'sunspec-inverter-103', 'eastron-sdm230']) {
    it(`${id}`, async () => {
      const { port } = await serve({ definition: getDefinition(id), profile: 'prosumer', seed: 2, clock: () => NOON_BANGKOK, initialImportKWh: 10 });
      const client = await connect(port);
      const result = await identify(async (fc, a, n) => (fc === 4 ? await client.readInputRegisters(a, n) : await client.readHoldingRegisters(a, n)).data);
      expect(result.best).toContain(id);
      if (id !== 'eastron-sdm230') expect(result.best).toEqual([id]);
    });
  }
});

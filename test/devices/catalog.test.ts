import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { getDefinition, listDefinitions, loadCatalog, UnknownDeviceError } from '../../devices/catalog.ts';
import { DefinitionError, validateDefinition, type DeviceDefinition } from '../../devices/definition.ts';

const good = (): DeviceDefinition => ({
  id: 'test-meter',
  vendor: 'Test',
  model: 'T1',
  description: 'minimal valid meter',
  phases: 1,
  maxPowerW: 5000,
  registers: [
    { quantity: 'importEnergy', address: 0, functionCode: 4, dataType: 'uint32', wordOrder: 'big', scale: 1, unit: 'Wh' },
    { quantity: 'exportEnergy', address: 2, functionCode: 4, dataType: 'uint32', wordOrder: 'big', scale: 1, unit: 'Wh' },
    { quantity: 'power', address: 4, functionCode: 4, dataType: 'int16', wordOrder: 'big', scale: 1, unit: 'W' },
  ],
});

describe('bundled catalog', () => {
  it('loads and validates every definition', () => {
    const ids = listDefinitions().map((d) => d.id);
    expect(ids).toEqual(['eastron-sdm120', 'eastron-sdm630']);
  });

  it('has the Eastron register maps (FC 04, float32, high word first)', () => {
    const sdm120 = getDefinition('eastron-sdm120');
    const at = (def: DeviceDefinition) => Object.fromEntries(def.registers.map((r) => [r.quantity, r.address]));
    expect(at(sdm120)).toEqual({ voltage: 0x00, current: 0x06, power: 0x0c, frequency: 0x46, importEnergy: 0x48, exportEnergy: 0x4a });
    expect(at(getDefinition('eastron-sdm630'))).toEqual({
      voltage: 0x00,
      current: 0x06,
      power: 0x34,
      frequency: 0x46,
      importEnergy: 0x48,
      exportEnergy: 0x4a,
    });
    for (const reg of [...sdm120.registers, ...getDefinition('sdm630').registers]) {
      expect(reg).toMatchObject({ functionCode: 4, dataType: 'float32', wordOrder: 'big', scale: 1 });
    }
  });

  it('resolves short aliases to the same definition', () => {
    expect(getDefinition('sdm120')).toBe(getDefinition('eastron-sdm120'));
    expect(getDefinition('SDM630')).toBe(getDefinition('eastron-sdm630'));
  });

  it('names the known ids when asked for an unknown one', () => {
    expect(() => getDefinition('sdm72')).toThrow(UnknownDeviceError);
    expect(() => getDefinition('sdm72')).toThrow(/unknown device model "sdm72"; known models: eastron-sdm120 \(sdm120\), eastron-sdm630 \(sdm630\)/);
  });

  it('hands out frozen definitions', () => {
    const def = getDefinition('sdm120');
    expect(Object.isFrozen(def)).toBe(true);
    expect(Object.isFrozen(def.registers[0])).toBe(true);
  });
});

describe('definition validation', () => {
  it('accepts a minimal valid definition', () => {
    expect(validateDefinition(good(), 'inline').id).toBe('test-meter');
  });

  const cases: [string, (d: DeviceDefinition) => unknown, RegExp][] = [
    ['a unit that does not fit the quantity', (d) => ((d.registers[2]!.unit = 'kWh'), d), /\/registers\/2\/unit: unit "kWh" does not fit quantity power; use kW or W/],
    ['a missing required quantity', (d) => ({ ...d, registers: d.registers.slice(0, 2) }), /\/registers: no register for power/],
    ['overlapping registers', (d) => ((d.registers[1]!.address = 1), d), /\/registers\/1\/address: exportEnergy at 0x0001 \(2 words\) overlaps importEnergy at 0x0000/],
    ['an unknown data type', (d) => ({ ...d, registers: [{ ...d.registers[0], dataType: 'float64' }, ...d.registers.slice(1)] }), /\/registers\/0\/dataType: got "float64", expected one of "float32", "int16", "uint16", "int32", "uint32"/],
    ['a misspelt field', (d) => ({ ...d, registres: [] }), /\/registres: unknown field/],
    ['a missing field', (d) => ({ ...d, vendor: undefined }), /\/vendor: /],
    ['a zero scale', (d) => ((d.registers[0]!.scale = 0), d), /\/registers\/0\/scale/],
    ['a register past address 0xffff', (d) => ((d.registers[0]!.address = 0xffff), d), /\/registers\/0\/address: uint32 at 0xffff runs past/],
    ['a quantity mapped twice', (d) => ({ ...d, registers: [...d.registers, { ...d.registers[2]!, address: 9 }] }), /\/registers\/3\/quantity: power is already mapped by \/registers\/2/],
  ];
  it.each(cases)('refuses %s with the field named', (_label, mutate, message) => {
    const run = () => validateDefinition(mutate(good()), 'my-meter.json');
    expect(run).toThrow(DefinitionError);
    expect(run).toThrow(/^invalid device definition my-meter\.json: /);
    expect(run).toThrow(message);
  });

  const withRanges = (ranges: unknown): unknown => ({ ...good(), ranges });
  const rangeCases: [string, unknown, RegExp][] = [
    ['ranges without their source', { input: [[0, 9]] }, /\/ranges\/source: /],
    ['a range whose first address is after its last', { source: 'doc', input: [[9, 0]] }, /\/ranges\/input\/0: first address 0x0009 is after last address 0x0000/],
    ['overlapping ranges', { source: 'doc', input: [[0, 9], [9, 20]] }, /\/ranges\/input\/1: starts at 0x0009, not after the previous range's last address 0x0009/],
    ['a range past address 0xffff', { source: 'doc', input: [[0, 0x10000]] }, /\/ranges\/input\/0\/1: /],
    ['a range that is not a pair', { source: 'doc', input: [[0, 1, 2]] }, /\/ranges\/input\/0: /],
    ['an unknown register table', { source: 'doc', input: [[0, 9]], coils: [[0, 9]] }, /\/ranges\/coils: unknown field/],
    ['a mapped register outside the ranges', { source: 'doc', input: [[0, 3]] }, /\/registers\/2\/address: power at 0x0004\.\.0x0004 lies outside every documented input range/],
    ['a register straddling the end of a range', { source: 'doc', input: [[0, 2], [4, 4]] }, /\/registers\/1\/address: exportEnergy at 0x0002\.\.0x0003 lies outside/],
    ['input registers with only holding ranges', { source: 'doc', holding: [[0, 9]] }, /\/registers\/0\/address: importEnergy .* outside every documented input range \(\/ranges\/input\)/],
  ];
  it.each(rangeCases)('refuses %s with the field named', (_label, ranges, message) => {
    expect(() => validateDefinition(withRanges(ranges), 'my-meter.json')).toThrow(message);
  });

  it('accepts documented ranges that cover the mapped registers, touching or apart', () => {
    expect(validateDefinition(withRanges({ source: 'vendor doc v1', input: [[0, 3], [4, 4], [100, 200]], holding: [[0, 1]] }), 'x').ranges?.input).toHaveLength(3);
  });

  it('allows the same address under different function codes (separate address spaces)', () => {
    const d = good();
    d.registers[2] = { ...d.registers[2]!, address: 0, functionCode: 3 };
    expect(() => validateDefinition(d, 'x')).not.toThrow();
  });
});

describe('loading a catalog directory', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const withFiles = (files: Record<string, string>) => {
    dir = mkdtempSync(join(tmpdir(), 'gtx-catalog-'));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  };

  it('loads valid files and ignores non-JSON ones', () => {
    const catalog = loadCatalog(withFiles({ 'a.json': JSON.stringify(good()), 'README.md': '# notes' }));
    expect(catalog.list().map((d) => d.id)).toEqual(['test-meter']);
    expect(catalog.has('test-meter')).toBe(true);
  });

  it('refuses a bad file, naming the file and the field', () => {
    const bad = good();
    bad.registers[0]!.unit = 'V';
    withFiles({ 'ok.json': JSON.stringify({ ...good(), id: 'ok-meter' }), 'broken-meter.json': JSON.stringify(bad) });
    expect(() => loadCatalog(dir)).toThrow(/broken-meter\.json: \/registers\/0\/unit: unit "V" does not fit quantity importEnergy; use kWh or Wh/);
  });

  it('refuses invalid JSON with the file named', () => {
    withFiles({ 'typo.json': '{ "id": "x", }' });
    expect(() => loadCatalog(dir)).toThrow(/typo\.json: \(root\): not valid JSON/);
  });

  it('refuses two files claiming the same id or alias', () => {
    withFiles({
      'a.json': JSON.stringify({ ...good(), id: 'meter-a', aliases: ['m'] }),
      'b.json': JSON.stringify({ ...good(), id: 'meter-b', aliases: ['m'] }),
    });
    expect(() => loadCatalog(dir)).toThrow(/b\.json: \/aliases\/0: "m" is already used by .*a\.json/);
  });
});

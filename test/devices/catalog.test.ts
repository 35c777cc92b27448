import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  getDefinition,
  isDefinitionPath,
  listDefinitions,
  loadCatalog,
  loadDefinitionFile,
  resolveDefinition,
  UnknownDeviceError,
} from '../../devices/catalog.ts';
import { DefinitionError, validateDefinition, type DeviceDefinition } from '../../devices/definition.ts';
import { planReads } from '../../devices/decoder.ts';
import { loadGatewayConfig } from '../../gateway/config.ts';

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


/** Writes files into a fresh temp folder per call (removed after each test); `.last` is the latest folder. */
function filesIn(prefix: string): ((files: Record<string, string>) => string) & { last: string } {
  const write = Object.assign(
    (files: Record<string, string>) => {
      write.last = mkdtempSync(join(tmpdir(), prefix));
      for (const [name, text] of Object.entries(files)) writeFileSync(join(write.last, name), text);
      return write.last;
    },
    { last: '' },
  );
  afterEach(() => {
    if (write.last) rmSync(write.last, { recursive: true, force: true });
  });
  return write;
}

describe('bundled catalog', () => {
  it('loads and validates every definition', () => {
    const ids = listDefinitions().map((d) => d.id);
    expect(ids).toEqual([
      'abb-b23',
      'abb-b24',
      'carlo-gavazzi-em24',
      'eastron-sdm120',
      'eastron-sdm230',
      'eastron-sdm630',
      'eastron-sdm72d',
      'schneider-iem3155',
      'sunspec-inverter-101',
      'sunspec-inverter-103',
      'sunspec-meter-201',
      'sunspec-meter-203',
    ]);
  });

  it('has the Eastron register maps (FC 04, float32, high word first)', () => {
    const sdm120 = getDefinition('eastron-sdm120');
    const at = (def: DeviceDefinition) => Object.fromEntries(def.registers.map((r) => [r.quantity, r.address]));
    expect(at(sdm120)).toEqual({ voltage: 0x00, current: 0x06, power: 0x0c, frequency: 0x46, importEnergy: 0x48, exportEnergy: 0x4a });
    expect(at(getDefinition('eastron-sdm630'))).toEqual({
      voltage: 0x00,
      voltageL2: 0x02,
      voltageL3: 0x04,
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
    expect(() => getDefinition('sdm999')).toThrow(UnknownDeviceError);
    expect(() => getDefinition('sdm999')).toThrow(
      /unknown device model "sdm999"; known models: abb-b23 \(b23\), .*eastron-sdm120 \(sdm120\), eastron-sdm230 \(sdm230\), eastron-sdm630 \(sdm630\), .*; or give the path of a \.json or \.toml definition file/,
    );
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
    ['an unknown data type', (d) => ({ ...d, registers: [{ ...d.registers[0], dataType: 'float64' }, ...d.registers.slice(1)] }), /\/registers\/0\/dataType: got "float64", expected one of "float32", "int16", "uint16", "int32", "uint32", "int64", "uint64"/],
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
  const withFiles = filesIn('gtx-catalog-');

  it('loads valid files and ignores non-JSON ones', () => {
    const catalog = loadCatalog(withFiles({ 'a.json': JSON.stringify(good()), 'README.md': '# notes' }));
    expect(catalog.list().map((d) => d.id)).toEqual(['test-meter']);
    expect(catalog.has('test-meter')).toBe(true);
  });

  it('refuses a bad file, naming the file and the field', () => {
    const bad = good();
    bad.registers[0]!.unit = 'V';
    withFiles({ 'ok.json': JSON.stringify({ ...good(), id: 'ok-meter' }), 'broken-meter.json': JSON.stringify(bad) });
    expect(() => loadCatalog(withFiles.last)).toThrow(/broken-meter\.json: \/registers\/0\/unit: unit "V" does not fit quantity importEnergy; use kWh or Wh/);
  });

  it('refuses invalid JSON with the file named', () => {
    withFiles({ 'typo.json': '{ "id": "x", }' });
    expect(() => loadCatalog(withFiles.last)).toThrow(/typo\.json: \(root\): not valid JSON/);
  });

  it('refuses two files claiming the same id or alias', () => {
    withFiles({
      'a.json': JSON.stringify({ ...good(), id: 'meter-a', aliases: ['m'] }),
      'b.json': JSON.stringify({ ...good(), id: 'meter-b', aliases: ['m'] }),
    });
    expect(() => loadCatalog(withFiles.last)).toThrow(/b\.json: \/aliases\/0: "m" is already used by .*a\.json/);
  });
});

describe('validation of SunSpec points, scale factors, notMeasured and identification', () => {
  const point = (extra: Record<string, unknown> = {}) => ({
    quantity: 'power',
    model: 203,
    offset: 16,
    functionCode: 3,
    dataType: 'int16',
    wordOrder: 'big',
    scale: 1,
    unit: 'W',
    scaleFactor: { offset: 20 },
    ...extra,
  });
  const sunspecDef = (power: unknown, more: Record<string, unknown> = {}) => ({
    ...good(),
    registers: [
      { quantity: 'importEnergy', model: 203, offset: 44, functionCode: 3, dataType: 'uint32', wordOrder: 'big', scale: 1, unit: 'Wh', scaleFactor: { offset: 52 } },
      { quantity: 'exportEnergy', model: 203, offset: 36, functionCode: 3, dataType: 'uint32', wordOrder: 'big', scale: 1, unit: 'Wh', scaleFactor: { offset: 52 } },
      power,
    ],
    ...more,
  });

  it('accepts SunSpec points sharing a scale factor', () => {
    expect(validateDefinition(sunspecDef(point()), 'x').registers).toHaveLength(3);
  });

  const withIdentify = (check: Record<string, unknown>, more: Record<string, unknown> = {}) => ({
    ...good(),
    identification: { registers: [{ label: 'code', address: 10, functionCode: 3, dataType: 'uint16', oneOf: [7], ...check }] },
    ...more,
  });
  const cases: [string, unknown, RegExp][] = [
    ['a point with an address too', sunspecDef(point({ address: 4 })), /\/registers\/2: give either address or a SunSpec model and offset, not both/],
    ['a point without its offset', sunspecDef(point({ offset: undefined })), /\/registers\/2: a SunSpec point needs both model and offset/],
    ['a point read as an input register', sunspecDef(point({ functionCode: 4 })), /\/registers\/2\/functionCode: SunSpec points are holding registers/],
    ['a point naming its scale factor by address', sunspecDef(point({ scaleFactor: { address: 40 } })), /\/registers\/2\/scaleFactor: a SunSpec point names its scale factor by offset/],
    ['a register without any location', { ...good(), registers: [{ ...good().registers[0], address: undefined }, ...good().registers.slice(1)] }, /\/registers\/0: needs an address/],
    ['a scale factor on top of a value', sunspecDef(point({ scaleFactor: { offset: 44 } })), /\/registers\/2\/scaleFactor: scale factor of power \(model 203 offset 44\) overlaps importEnergy at model 203 offset 44/],
    ['overlapping points in one model', sunspecDef(point({ offset: 45, scaleFactor: undefined })), /\/registers\/2\/offset: power at model 203 offset 45 \(1 words\) overlaps importEnergy at model 203 offset 44/],
    ['a negative scale on an energy', { ...good(), registers: [{ ...good().registers[0], scale: -1 }, ...good().registers.slice(1)] }, /\/registers\/0\/scale: scale must be positive; a negative scale only flips the sign of power/],
    ['a notMeasured quantity that is mapped', { ...good(), notMeasured: ['importEnergy'] }, /\/notMeasured\/0: importEnergy is mapped by \/registers\/0/],
    ['both energies not measured', { ...good(), registers: good().registers.slice(2), notMeasured: ['importEnergy', 'exportEnergy'] }, /\/notMeasured: a device must measure import or export energy/],
    ['a sunspec block without SunSpec points', { ...good(), sunspec: { baseAddresses: [0] } }, /\/sunspec: only definitions with SunSpec points/],
    ['identification without accepted values', withIdentify({ oneOf: undefined }), /\/identification\/registers\/0: needs oneOf \(accepted values\) or pattern/],
    ['a string without words', withIdentify({ dataType: 'string', oneOf: ['X1'] }), /\/identification\/registers\/0\/words: a string needs words/],
    ['a pattern that is no regular expression', withIdentify({ dataType: 'string', words: 2, oneOf: undefined, pattern: '(', example: 'x' }), /\/pattern: not a regular expression/],
    ['an example the pattern refuses', withIdentify({ dataType: 'string', words: 3, oneOf: undefined, pattern: '^B23', example: 'B24 1' }), /\/example: "B24 1" does not match the pattern \^B23/],
    ['a pattern without an example', withIdentify({ dataType: 'string', words: 3, oneOf: undefined, pattern: '^B23' }), /\/example: a pattern needs an example value/],
    ['a string longer than its registers', withIdentify({ dataType: 'string', words: 1, oneOf: ['ABC'] }), /\/oneOf\/0: "ABC" is longer than 2 characters/],
    ['a number too large for uint16', withIdentify({ oneOf: [70000] }), /\/oneOf\/0: expected an integer 0\.\.65535, got 70000/],
    ['identification outside the documented ranges', withIdentify({}, { ranges: { source: 'doc', input: [[0, 9]], holding: [[0, 5]] } }), /\/identification\/registers\/0\/address: code at 0x000a lies outside every documented holding range/],
  ];
  it.each(cases)('refuses %s with the field named', (_label, input, message) => {
    expect(() => validateDefinition(input, 'my-meter.json')).toThrow(message);
  });
});

describe('TOML definitions and definition files', () => {
  const inDir = filesIn('gtx-defs-');
  const toml = `id = "toml-meter"
vendor = "Test"
model = "T2"
description = "TOML"
phases = 1
maxPowerW = 5000

[[registers]]
quantity = "importEnergy"
address = 0x10
functionCode = 4
dataType = "uint64"
wordOrder = "little"
scale = 1
unit = "Wh"

[[registers]]
quantity = "exportEnergy"
address = 0x14
functionCode = 4
dataType = "uint64"
wordOrder = "little"
scale = 1
unit = "Wh"

[[registers]]
quantity = "power"
address = 0x18
functionCode = 4
dataType = "int32"
wordOrder = "big"
scale = 1
unit = "W"
scaleFactor = { address = 0x1a }

[ranges]
source = "test document v1"
input = [[0x10, 0x1a]]
`;

  it('loads TOML with the same fields as JSON (hex addresses, inline tables) from a catalog directory', () => {
    const catalog = loadCatalog(inDir({ 'b.toml': toml, 'a.json': JSON.stringify(good()) }));
    expect(catalog.list().map((d) => d.id)).toEqual(['test-meter', 'toml-meter']);
    const def = catalog.get('toml-meter');
    expect(def.registers[0]).toEqual({ quantity: 'importEnergy', address: 16, functionCode: 4, dataType: 'uint64', wordOrder: 'little', scale: 1, unit: 'Wh' });
    expect(def.registers[2]?.scaleFactor).toEqual({ address: 26 });
    expect(planReads(def)).toEqual([{ functionCode: 4, address: 0x10, count: 11 }]);
  });

  it('loadDefinitionFile reads .json and .toml, names the file in every error', () => {
    const dir = inDir({ 'm.toml': toml, 'm.json': JSON.stringify(good()), 'bad.toml': 'id = "x"\nvendor = ', 'wrong.toml': toml.replace('unit = "W"', 'unit = "Wh"'), 'm.yaml': '' });
    expect(loadDefinitionFile(join(dir, 'm.toml')).id).toBe('toml-meter');
    expect(Object.isFrozen(loadDefinitionFile(join(dir, 'm.json')).registers)).toBe(true);
    expect(() => loadDefinitionFile(join(dir, 'bad.toml'))).toThrow(/bad\.toml: \(root\): not valid TOML: /);
    expect(() => loadDefinitionFile(join(dir, 'wrong.toml'))).toThrow(/wrong\.toml: \/registers\/2\/unit: unit "Wh" does not fit quantity power/);
    expect(() => loadDefinitionFile(join(dir, 'm.yaml'))).toThrow(/m\.yaml: \(root\): a definition file ends in \.json or \.toml/);
    expect(() => loadDefinitionFile(join(dir, 'none.toml'))).toThrow(/none\.toml: \(root\): no such file/);
  });

  it('getDefinition and resolveDefinition take a file path where a model id goes (a gateway [[meters]] model)', () => {
    const dir = inDir({ 'my-meter.toml': toml });
    expect(getDefinition(join(dir, 'my-meter.toml')).id).toBe('toml-meter');
    expect(resolveDefinition('my-meter.toml', dir).id).toBe('toml-meter');
    expect(resolveDefinition('./my-meter.toml', dir).model).toBe('T2');
    expect(resolveDefinition('sdm120', dir)).toBe(getDefinition('eastron-sdm120'));
    expect(isDefinitionPath('sdm120')).toBe(false);
    expect(isDefinitionPath('meters/x.json')).toBe(true);
  });

  it('a gateway [[meters]] model can name a definition file (absolute path)', () => {
    const dir = inDir({ 'my-meter.toml': toml });
    const config = join(dir, 'gateway.toml');
    writeFileSync(
      config,
      `[gateway]\nid = "gw-files"\n\n[[meters]]\nid = "house-1"\nmodel = "${join(dir, 'my-meter.toml')}"\nhost = "127.0.0.1"\nport = 5020\n`,
    );
    const meter = loadGatewayConfig(config).meters[0];
    expect(meter?.definition.id).toBe('toml-meter');
    expect(meter?.ratedPowerW).toBe(5000);
  });

  it('ships a generic TOML example that validates and describes its fields', () => {
    const path = fileURLToPath(new URL('../../devices/examples/generic-meter.toml', import.meta.url));
    const def = loadDefinitionFile(path);
    expect(def.id).toBe('generic-example');
    expect(def.registers.map((r) => r.quantity)).toEqual(['voltage', 'current', 'power', 'frequency', 'importEnergy', 'exportEnergy']);
    expect(readFileSync(path, 'utf8')).toMatch(/\[\[meters\]\][\s\S]*model = ".*\.toml"/);
  });
});

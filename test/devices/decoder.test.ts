import { describe, expect, it } from 'vitest';
import { getDefinition } from '../../devices/catalog.ts';
import { validateDefinition, type DataType, type DeviceDefinition, type RegisterDef, type WordOrder } from '../../devices/definition.ts';
import {
  DecodeError,
  decodeBlocks,
  decodeRegisters,
  decodeValue,
  encodeValue,
  planReads,
  type BlockData,
} from '../../devices/decoder.ts';

const reg = (dataType: DataType, wordOrder: WordOrder, extra: Partial<RegisterDef> = {}): RegisterDef => ({
  quantity: 'power',
  address: 0,
  functionCode: 4,
  dataType,
  wordOrder,
  scale: 1,
  unit: 'W',
  ...extra,
});

describe('encodeValue / decodeValue', () => {
  const samples: Record<DataType, number[]> = {
    float32: [0, 1, -1, 230.5, 1234.5678, -4000.25, 3.4e38, 1e-30],
    int16: [0, 1, -1, 32767, -32768, -1234],
    uint16: [0, 1, 65535, 54321],
    int32: [0, -1, 2147483647, -2147483648, -123456789],
    uint32: [0, 1, 65536, 4294967295, 3000000000],
    int64: [0, -1, 1, 2 ** 40 + 5, -(2 ** 52), Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER],
    uint64: [0, 1, 2 ** 32, 2 ** 48 + 7, Number.MAX_SAFE_INTEGER],
  };
  for (const dataType of Object.keys(samples) as DataType[]) {
    for (const wordOrder of ['big', 'little'] as const) {
      it(`round-trips ${dataType} (${wordOrder} word order)`, () => {
        for (const value of samples[dataType]) {
          const r = reg(dataType, wordOrder);
          const words = encodeValue(r, value);
          expect(words).toHaveLength(dataType.endsWith('16') ? 1 : dataType.endsWith('64') ? 4 : 2);
          for (const w of words) expect(Number.isInteger(w) && w >= 0 && w <= 0xffff).toBe(true);
          const expected = dataType === 'float32' ? Math.fround(value) : value;
          expect(decodeValue(r, words)).toBe(expected);
        }
      });
    }
  }

  it('puts the high word first for big and last for little', () => {
    // 230.0 as IEEE 754 float32 is 0x43660000.
    expect(encodeValue(reg('float32', 'big'), 230)).toEqual([0x4366, 0x0000]);
    expect(encodeValue(reg('float32', 'little'), 230)).toEqual([0x0000, 0x4366]);
    expect(encodeValue(reg('uint32', 'big'), 0x12345678)).toEqual([0x1234, 0x5678]);
    expect(encodeValue(reg('uint32', 'little'), 0x12345678)).toEqual([0x5678, 0x1234]);
    expect(encodeValue(reg('int16', 'big'), -2)).toEqual([0xfffe]);
  });

  it('applies scale both ways', () => {
    const r = reg('uint32', 'big', { quantity: 'importEnergy', unit: 'kWh', scale: 0.01 });
    expect(encodeValue(r, 12.34)).toEqual([0, 1234]);
    expect(decodeValue(r, [0, 1234])).toBeCloseTo(12.34, 12);
  });

  it('refuses values an integer register cannot hold', () => {
    expect(() => encodeValue(reg('uint16', 'big'), 70000)).toThrow(RangeError);
    expect(() => encodeValue(reg('int16', 'big'), Number.NaN)).toThrow(RangeError);
    expect(() => encodeValue(reg('uint32', 'big'), -1)).toThrow(/does not fit uint32/);
  });
});

describe('planReads', () => {
  it('reads the SDM120 in one block: gaps are bridged inside the documented input range 30001-30346', () => {
    expect(planReads(getDefinition('sdm120'))).toEqual([{ functionCode: 4, address: 0x00, count: 0x4c }]);
    expect(planReads(getDefinition('sdm630'))).toEqual([{ functionCode: 4, address: 0x00, count: 0x4c }]);
  });

  it('never bridges a gap the device does not document (no ranges: only touching registers merge)', () => {
    const { ranges: _ranges, ...bare } = getDefinition('sdm120');
    expect(planReads(validateDefinition(structuredClone(bare), 'x'))).toEqual([
      { functionCode: 4, address: 0x00, count: 2 },
      { functionCode: 4, address: 0x06, count: 2 },
      { functionCode: 4, address: 0x0c, count: 2 },
      { functionCode: 4, address: 0x46, count: 6 },
    ]);
  });

  it('bridges a gap only inside one documented range, up to 125 registers', () => {
    const at = (quantity: RegisterDef['quantity'], address: number, unit: RegisterDef['unit']): RegisterDef =>
      reg('float32', 'big', { quantity, address, unit });
    const def = (input: [number, number][]) =>
      validateDefinition(
        {
          id: 'x',
          vendor: 'v',
          model: 'm',
          description: '',
          phases: 1,
          maxPowerW: 1,
          registers: [at('importEnergy', 0, 'kWh'), at('exportEnergy', 100, 'kWh'), at('power', 200, 'W'), at('voltage', 300, 'V')],
          ranges: { source: 'doc', input },
        },
        'x',
      );
    // One range 0..301: 0 and 100 share a block (102 registers); 200 would make 202 > 125.
    expect(planReads(def([[0, 301]]))).toEqual([
      { functionCode: 4, address: 0, count: 102 },
      { functionCode: 4, address: 200, count: 102 },
    ]);
    // Touching ranges are one readable span; a gap between ranges is never bridged.
    expect(planReads(def([[0, 50], [51, 101], [200, 201], [300, 301]]))).toEqual([
      { functionCode: 4, address: 0, count: 102 },
      { functionCode: 4, address: 200, count: 2 },
      { functionCode: 4, address: 300, count: 2 },
    ]);
  });

  it('keeps function codes apart and splits at 125 registers', () => {
    const registers: RegisterDef[] = [
      reg('uint32', 'big', { quantity: 'importEnergy', unit: 'Wh', address: 2 }),
      reg('uint32', 'big', { quantity: 'exportEnergy', unit: 'Wh', address: 4, functionCode: 3 }),
      reg('int16', 'big', { address: 6 }),
    ];
    const def = validateDefinition({ id: 'x', vendor: 'v', model: 'm', description: '', phases: 1, maxPowerW: 1, registers }, 'x');
    expect(planReads(def)).toEqual([
      { functionCode: 3, address: 4, count: 2 },
      { functionCode: 4, address: 2, count: 2 },
      { functionCode: 4, address: 6, count: 1 },
    ]);

    // Not a valid definition (quantity repeated); planReads only needs the layout.
    const many: DeviceDefinition = {
      id: 'wide',
      vendor: 'v',
      model: 'm',
      description: '',
      phases: 1,
      maxPowerW: 1,
      registers: Array.from({ length: 70 }, (_, i) => reg('float32', 'big', { address: 2 * i })),
    };
    // 62 float32 = 124 registers fit one request; a 63rd would make 126 > 125.
    expect(planReads(many)).toEqual([
      { functionCode: 4, address: 0, count: 124 },
      { functionCode: 4, address: 124, count: 16 },
    ]);
  });
});

describe('decodeBlocks', () => {
  const sdm120 = getDefinition('sdm120');
  const f32 = (v: number) => encodeValue(reg('float32', 'big'), v);
  const blocks = (values: { v?: number; i?: number; p?: number; hz?: number; imp?: number; exp?: number }): BlockData[] => [
    { functionCode: 4, address: 0x00, count: 2, registers: f32(values.v ?? 230.1) },
    { functionCode: 4, address: 0x06, count: 2, registers: f32(values.i ?? 5.25) },
    { functionCode: 4, address: 0x0c, count: 2, registers: f32(values.p ?? -1207.6) },
    { functionCode: 4, address: 0x46, count: 6, registers: [...f32(values.hz ?? 49.98), ...f32(values.imp ?? 1.2345), ...f32(values.exp ?? 12345.67)] },
  ];

  it('converts once to integers: Wh, W, mV, mA, mHz', () => {
    expect(decodeBlocks(sdm120, blocks({}))).toEqual({
      importWh: Math.round(Math.fround(1.2345) * 1000),
      exportWh: Math.round(Math.fround(12345.67) * 1000),
      powerW: -1208,
      voltageMilliV: Math.round(Math.fround(230.1) * 1000),
      currentMilliA: 5250,
      frequencyMilliHz: Math.round(Math.fround(49.98) * 1000),
    });
    const r = decodeBlocks(sdm120, blocks({}));
    for (const v of Object.values(r)) expect(Number.isSafeInteger(v)).toBe(true);
    expect(r.importWh).toBe(1235); // 1.2345 kWh, float32 1.23450005… → 1234.50005 Wh → 1235
  });

  it('gives 0, not -0, for tiny negative power', () => {
    expect(Object.is(decodeBlocks(sdm120, blocks({ p: -0.2 })).powerW, 0)).toBe(true);
  });

  it('converts Wh and kW units with their own factor', () => {
    const registers: RegisterDef[] = [
      reg('uint32', 'little', { quantity: 'importEnergy', unit: 'Wh', address: 0, scale: 10 }),
      reg('uint32', 'little', { quantity: 'exportEnergy', unit: 'Wh', address: 2, scale: 10 }),
      reg('int32', 'big', { quantity: 'power', unit: 'kW', address: 4, scale: 0.001 }),
    ];
    const def = validateDefinition({ id: 'x', vendor: 'v', model: 'm', description: '', phases: 3, maxPowerW: 1e5, registers }, 'x');
    const words = [...encodeValue(registers[0]!, 123450), ...encodeValue(registers[1]!, 70), ...encodeValue(registers[2]!, -3.5)];
    expect(decodeBlocks(def, [{ functionCode: 4, address: 0, count: 6, registers: words }])).toEqual({ importWh: 123450, exportWh: 70, powerW: -3500 });
  });

  it('rejects NaN, Infinity and negative energy with the device, quantity and address named', () => {
    const fail = (b: BlockData[]) => {
      try {
        decodeBlocks(sdm120, b);
      } catch (err) {
        return err;
      }
      throw new Error('expected a DecodeError');
    };
    const nan = fail(blocks({ imp: Number.NaN }));
    expect(nan).toBeInstanceOf(DecodeError);
    expect(nan).toMatchObject({ deviceId: 'eastron-sdm120', quantity: 'importEnergy', address: 0x48, problem: 'not-finite' });
    expect((nan as Error).message).toMatch(/^eastron-sdm120: importEnergy at input register 0x0048 \(72\) is NaN/);
    expect(fail(blocks({ p: Number.POSITIVE_INFINITY }))).toMatchObject({ quantity: 'power', address: 0x0c, problem: 'not-finite' });
    const negative = fail(blocks({ exp: -0.5 }));
    expect(negative).toMatchObject({ quantity: 'exportEnergy', address: 0x4a, problem: 'negative-energy' });
    expect((negative as Error).message).toMatch(/0x004a .*cannot be negative/);
  });

  it('rejects a reading whose registers were not read, or are not 16-bit words', () => {
    expect(() => decodeBlocks(sdm120, blocks({}).slice(0, 3))).toThrow(/frequency at input register 0x0046 \(70\) was not among the registers read/);
    const bad = blocks({});
    bad[0] = { ...bad[0]!, registers: [70000, 0] };
    expect(() => decodeBlocks(sdm120, bad)).toThrow(/voltage .* holds 70000/);
  });

  it('decodeRegisters issues one read per planned block', async () => {
    const words = new Array<number>(0x4c).fill(0);
    for (const b of blocks({})) words.splice(b.address, b.registers.length, ...b.registers);
    const calls: string[] = [];
    const reading = await decodeRegisters(sdm120, async (fc, address, count) => {
      calls.push(`${fc}:${address}+${count}`);
      return words.slice(address, address + count);
    });
    expect(calls).toEqual(['4:0+76']);
    expect(reading).toEqual(decodeBlocks(sdm120, blocks({})));
  });
});

// Register data types: 64-bit integers (exact through BigInt, refused past 2^53 when decoding a
// reading), both word orders, "not available" conventions and ASCII strings.
import { describe, expect, it } from 'vitest';
import { getDefinition } from '../../devices/catalog.ts';
import { decodeRaw, decodeString, encodeRaw, encodeString, exactNumber, isNotAvailable } from '../../devices/codec.ts';
import { DecodeError, decodeBlocks, type BlockData } from '../../devices/decoder.ts';

describe('64-bit integers', () => {
  it('put the most significant word first for big and last for little', () => {
    expect(encodeRaw('uint64', 'big', 0x0001_0002_0003_0004n)).toEqual([1, 2, 3, 4]);
    expect(encodeRaw('uint64', 'little', 0x0001_0002_0003_0004n)).toEqual([4, 3, 2, 1]);
    expect(decodeRaw('uint64', 'big', [1, 2, 3, 4])).toBe(0x0001_0002_0003_0004n);
    expect(decodeRaw('uint64', 'little', [4, 3, 2, 1])).toBe(0x0001_0002_0003_0004n);
    expect(encodeRaw('int64', 'big', -2)).toEqual([0xffff, 0xffff, 0xffff, 0xfffe]);
    expect(decodeRaw('int64', 'little', [0xfffe, 0xffff, 0xffff, 0xffff])).toBe(-2n);
  });

  it('decode exactly past 2^53 (as bigint), and only safe values become numbers', () => {
    const big = 2n ** 60n + 1n;
    const words = encodeRaw('uint64', 'big', big);
    expect(decodeRaw('uint64', 'big', words)).toBe(big);
    expect(exactNumber(big)).toBeUndefined();
    expect(exactNumber(2n ** 53n - 1n)).toBe(Number.MAX_SAFE_INTEGER);
    expect(exactNumber(-(2n ** 53n) + 1n)).toBe(Number.MIN_SAFE_INTEGER);
    expect(() => encodeRaw('uint64', 'big', 2n ** 64n)).toThrow(RangeError);
    expect(() => encodeRaw('int64', 'big', 2n ** 63n)).toThrow(/does not fit int64/);
    expect(() => encodeRaw('uint32', 'big', 2 ** 53 + 2)).toThrow(RangeError);
  });

  const iem = getDefinition('iem3155');
  /** iEM3155 blocks with the import energy (int64 Wh at 3204 → address 3203) set to `words`. */
  const iemBlocks = (importWords: number[]): BlockData[] => {
    const data = new Array<number>(112).fill(0);
    return [
      { functionCode: 3, address: 2999, count: 112, registers: data },
      { functionCode: 3, address: 3203, count: 8, registers: [...importWords, 0, 0, 0, 7] },
    ];
  };

  it('decode energy counters up to 2^53 - 1 Wh exactly and refuse anything larger with the register named', () => {
    expect(decodeBlocks(iem, iemBlocks(encodeRaw('int64', 'big', Number.MAX_SAFE_INTEGER)))).toMatchObject({ importWh: Number.MAX_SAFE_INTEGER, exportWh: 7 });
    const err = (() => {
      try {
        decodeBlocks(iem, iemBlocks(encodeRaw('int64', 'big', 2n ** 53n + 1n)));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(DecodeError);
    expect(err).toMatchObject({ problem: 'out-of-range', quantity: 'importEnergy', address: 3203 });
    expect((err as Error).message).toBe(
      'schneider-iem3155: importEnergy at holding register 0x0c83 (3203) holds 9007199254740993 (0x0020 0x0000 0x0000 0x0001), beyond 2^53: too large to represent exactly; check dataType and wordOrder',
    );
    expect(() => decodeBlocks(iem, iemBlocks(encodeRaw('int64', 'big', -5)))).toThrow(/importEnergy .* is -5 Wh; an energy counter cannot be negative/);
  });

  it('reject a reading whose value fits 2^53 raw but not after scaling', () => {
    const abb = getDefinition('b23');
    const blocks: BlockData[] = [
      { functionCode: 3, address: 0x5000, count: 8, registers: [...encodeRaw('uint64', 'big', 2 ** 52), 0, 0, 0, 1] },
      { functionCode: 3, address: 0x5b00, count: 45, registers: new Array<number>(45).fill(0) },
    ];
    // 2^52 × 0.01 kWh is 4.5e16 Wh: past what a reading can hold exactly.
    expect(() => decodeBlocks(abb, blocks)).toThrow(/importEnergy .* too large to represent exactly/);
  });
});

describe('word order of 32-bit integers (Carlo Gavazzi: low word first)', () => {
  it('decodes EM24 registers with the low word at the lower address', () => {
    const em24 = getDefinition('em24');
    const regs = new Array<number>(80).fill(0);
    regs.splice(0x00, 2, 0x08fd, 0x0000); // 2301 → 230.1 V
    regs.splice(0x02, 2, 0x08fc, 0x0000); // 2300 → 230.0 V (L2)
    regs.splice(0x04, 2, 0x0000, 0x0000); // 0 V: phase 3 missing
    regs.splice(0x0c, 2, 0x1388, 0x0000); // 5000 → 5.000 A
    regs.splice(0x28, 2, 0x1dc0, 0xfffe); // -123456 → -12345.6 W
    regs.splice(0x33, 1, 500); // 50.0 Hz
    regs.splice(0x34, 2, 0x4240, 0x000f); // 1 000 000 → 100 000.0 kWh
    regs.splice(0x4e, 2, 0x0001, 0x0000); // 1 → 0.1 kWh
    expect(decodeBlocks(em24, [{ functionCode: 3, address: 0, count: 80, registers: regs }])).toEqual({
      voltageMilliV: 230100,
      voltageL2MilliV: 230000,
      voltageL3MilliV: 0,
      currentMilliA: 5000,
      powerW: -12346,
      frequencyMilliHz: 50000,
      importWh: 100_000_000,
      exportWh: 100,
    });
    expect(encodeRaw('int32', 'little', -123456)).toEqual([0x1dc0, 0xfffe]);
  });
});

describe('"not available" conventions', () => {
  it('sunspec: most negative signed, largest unsigned, NaN; max (ABB): the largest value of the type', () => {
    expect(isNotAvailable('sunspec', 'int16', -0x8000)).toBe(true);
    expect(isNotAvailable('sunspec', 'int16', 0x7fff)).toBe(false);
    expect(isNotAvailable('sunspec', 'uint16', 0xffff)).toBe(true);
    expect(isNotAvailable('sunspec', 'uint32', 0xffffffff)).toBe(true);
    expect(isNotAvailable('sunspec', 'int64', -(2n ** 63n))).toBe(true);
    expect(isNotAvailable('sunspec', 'float32', Number.NaN)).toBe(true);
    expect(isNotAvailable('max', 'int32', 0x7fffffff)).toBe(true);
    expect(isNotAvailable('max', 'uint64', 2n ** 64n - 1n)).toBe(true);
    expect(isNotAvailable('max', 'int16', -0x8000)).toBe(false);
    expect(isNotAvailable(undefined, 'uint16', 0xffff)).toBe(false);
  });

  it('ABB meters: a quantity the meter lacks is left out; a missing energy counter fails the reading', () => {
    const abb = getDefinition('b23');
    const instantaneous = new Array<number>(45).fill(0);
    instantaneous.splice(0x00, 2, 0, 2301); // 230.1 V
    instantaneous.splice(0x02, 2, 0, 2302); // L2
    instantaneous.splice(0x04, 2, 0xffff, 0xffff); // L3: not available
    instantaneous.splice(0x0c, 2, 0xffff, 0xffff); // current: not available
    instantaneous.splice(0x14, 2, 0x0002, 0x49f0); // 150000 → 1500.00 W
    instantaneous.splice(0x2c, 1, 0xffff); // frequency: not available
    const energies = [0, 0, 0, 12345, 0, 0, 0, 678];
    const reading = decodeBlocks(abb, [
      { functionCode: 3, address: 0x5000, count: 8, registers: energies },
      { functionCode: 3, address: 0x5b00, count: 45, registers: instantaneous },
    ]);
    expect(reading).toEqual({ importWh: 123450, exportWh: 6780, powerW: 1500, voltageMilliV: 230100, voltageL2MilliV: 230200 });
    expect(() =>
      decodeBlocks(abb, [
        { functionCode: 3, address: 0x5000, count: 8, registers: [0xffff, 0xffff, 0xffff, 0xffff, 0, 0, 0, 0] },
        { functionCode: 3, address: 0x5b00, count: 45, registers: instantaneous },
      ]),
    ).toThrow(/importEnergy at holding register 0x5000 .*"not available" value; a reading needs importEnergy/);
  });
});

describe('ASCII strings', () => {
  it('round-trip two characters per register, NUL-padded, trimmed when read', () => {
    expect(encodeString('B23 312-100', 6)).toEqual([0x4232, 0x3320, 0x3331, 0x322d, 0x3130, 0x3000]);
    expect(decodeString(encodeString('B23 312-100', 6))).toBe('B23 312-100');
    expect(decodeString(encodeString('iEM3155', 20))).toBe('iEM3155');
    expect(decodeString([0x4142, 0x2020])).toBe('AB');
  });
});

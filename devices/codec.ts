// Register data types on the wire: 16-bit words (in the device's word order) to raw numbers
// and back. 64-bit types go through BigInt so no bit is lost before the range check.
import { WORDS_PER_TYPE, type DataType, type NotAvailableConvention, type WordOrder } from './definition.ts';

/** A raw register value: number for ≤ 32-bit types, bigint for int64/uint64. */
export type Raw = number | bigint;

const INT_RANGE: Readonly<Record<Exclude<DataType, 'float32'>, [bigint, bigint]>> = {
  int16: [-(2n ** 15n), 2n ** 15n - 1n],
  uint16: [0n, 2n ** 16n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
};

/** Words high word first, whatever order the device sends them in ('little' = low word first). */
function highFirst(words: readonly number[], wordOrder: WordOrder, count: number): number[] {
  const w = Array.from({ length: count }, (_, i) => words[i] ?? 0);
  return wordOrder === 'big' ? w : w.reverse();
}

function unsigned(words: readonly number[]): bigint {
  let n = 0n;
  for (const w of words) n = (n << 16n) | BigInt(w);
  return n;
}

/** The raw value of `dataType` held in `words` (wire order). */
export function decodeRaw(dataType: DataType, wordOrder: WordOrder, words: readonly number[]): Raw {
  const count = WORDS_PER_TYPE[dataType];
  const w = highFirst(words, wordOrder, count);
  switch (dataType) {
    case 'uint16':
      return w[0] ?? 0;
    case 'int16': {
      const v = w[0] ?? 0;
      return v >= 0x8000 ? v - 0x10000 : v;
    }
    case 'uint32':
      return (w[0] ?? 0) * 0x10000 + (w[1] ?? 0);
    case 'int32':
      return (((w[0] ?? 0) << 16) | (w[1] ?? 0)) >> 0;
    case 'float32': {
      const view = new DataView(new ArrayBuffer(4));
      view.setUint16(0, w[0] ?? 0);
      view.setUint16(2, w[1] ?? 0);
      return view.getFloat32(0);
    }
    case 'uint64':
      return unsigned(w);
    case 'int64':
      return BigInt.asIntN(64, unsigned(w));
  }
}

/**
 * The words (wire order) holding `raw` as `dataType`. Integer types take an integer (number or
 * bigint) and throw RangeError outside the type's range; float32 rounds to single precision.
 */
export function encodeRaw(dataType: DataType, wordOrder: WordOrder, raw: Raw): number[] {
  const count = WORDS_PER_TYPE[dataType];
  let bits: bigint;
  if (dataType === 'float32') {
    const view = new DataView(new ArrayBuffer(4));
    view.setFloat32(0, Number(raw));
    bits = BigInt(view.getUint32(0));
  } else {
    if (typeof raw === 'number' && !Number.isSafeInteger(raw)) {
      throw new RangeError(`${raw} is not an integer that ${dataType} can hold exactly`);
    }
    const n = BigInt(raw);
    const [min, max] = INT_RANGE[dataType];
    if (n < min || n > max) throw new RangeError(`${n} does not fit ${dataType} (${min}..${max})`);
    bits = BigInt.asUintN(count * 16, n);
  }
  const high: number[] = [];
  for (let i = count - 1; i >= 0; i--) high.push(Number((bits >> BigInt(16 * i)) & 0xffffn));
  return wordOrder === 'big' ? high : high.reverse();
}

/** The smallest and largest raw value of an integer type, as numbers (float32: ±3.4e38). */
export function rawLimits(dataType: DataType): [number, number] {
  if (dataType === 'float32') return [-3.4028234663852886e38, 3.4028234663852886e38];
  const [min, max] = INT_RANGE[dataType];
  return [Number(min), Number(max)];
}

/**
 * Whether `raw` is the "no value" marker of a convention. 'sunspec': the most negative signed
 * value (0x8000 …), the largest unsigned one (0xFFFF …) and NaN; 'max' (ABB): the largest
 * value of the type (0x7FFF … signed, 0xFFFF … unsigned).
 */
export function isNotAvailable(convention: NotAvailableConvention | undefined, dataType: DataType, raw: Raw): boolean {
  if (convention === undefined) return false;
  if (dataType === 'float32') return Number.isNaN(raw);
  const [min, max] = INT_RANGE[dataType];
  const n = BigInt(raw);
  const signed = min < 0n;
  if (convention === 'sunspec') return signed ? n === min : n === max;
  return n === max;
}

/** A bigint as a number when it is exactly representable, else undefined. */
export function exactNumber(raw: Raw): number | undefined {
  if (typeof raw === 'number') return raw;
  return raw >= BigInt(Number.MIN_SAFE_INTEGER) && raw <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(raw) : undefined;
}

/** raw × 10^exponent, dividing for negative exponents so that e.g. 23012 × 10^-2 is exactly 230.12. */
export function powerOfTen(value: number, exponent: number): number {
  return exponent >= 0 ? value * 10 ** exponent : value / 10 ** -exponent;
}

/** ASCII text of string registers (two characters per word, high byte first), NULs and padding trimmed. */
export function decodeString(words: readonly number[]): string {
  const chars: string[] = [];
  for (const w of words) chars.push(String.fromCharCode(w >> 8, w & 0xff));
  return chars.join('').replace(/\0/g, ' ').trim();
}

/** `text` as `words` string registers, NUL-padded (the SunSpec convention). */
export function encodeString(text: string, words: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < words; i++) {
    const hi = text.charCodeAt(2 * i);
    const lo = text.charCodeAt(2 * i + 1);
    out.push(((Number.isNaN(hi) ? 0 : hi & 0xff) << 8) | (Number.isNaN(lo) ? 0 : lo & 0xff));
  }
  return out;
}

// The meaning checks of a device definition, after the schema accepted its shape: where each
// register is, units, required quantities, overlaps, documented ranges and identification.
import {
  MAX_ADDRESS,
  RANGE_TABLE,
  REQUIRED_QUANTITIES,
  UNITS_FOR_QUANTITY,
  WORDS_PER_TYPE,
  isModelPoint,
  type DeviceDefinition,
  type FunctionCode,
  type IdentifyCheckDef,
  type Quantity,
  type RegisterRanges,
} from './definition.ts';

type Fail = (field: string, problem: string) => Error;

function hex(address: number): string {
  return `0x${address.toString(16).padStart(4, '0')}`;
}

/** A span of registers a definition claims, by absolute address or inside a SunSpec model. */
interface Span {
  field: string;
  what: string;
  words: number;
  /** Absolute: function code + address. SunSpec: model + offset. */
  space: string;
  start: number;
}

function spaceName(fc: FunctionCode): string {
  return `fc${fc}`;
}

/** Throws (via fail) the first problem found. */
export function checkDefinition(def: DeviceDefinition, fail: Fail): void {
  const valueSpans: Span[] = [];
  const factorSpans: Span[] = [];

  def.registers.forEach((reg, i) => {
    const at = `/registers/${i}`;
    const allowed = UNITS_FOR_QUANTITY[reg.quantity];
    if (!allowed.includes(reg.unit)) {
      throw fail(`${at}/unit`, `unit ${JSON.stringify(reg.unit)} does not fit quantity ${reg.quantity}; use ${allowed.join(' or ')}`);
    }
    if (!Number.isFinite(reg.scale)) throw fail(`${at}/scale`, 'scale must be a finite number');
    if (reg.scale === 0) throw fail(`${at}/scale`, 'scale must not be 0');
    if (reg.scale < 0 && reg.quantity !== 'power') {
      throw fail(`${at}/scale`, `scale must be positive; a negative scale only flips the sign of power (e.g. an inverter reporting generation as positive)`);
    }
    const words = WORDS_PER_TYPE[reg.dataType];
    const point = isModelPoint(reg);
    if (point) {
      if (reg.address !== undefined) throw fail(at, 'give either address or a SunSpec model and offset, not both');
      if (reg.model === undefined || reg.offset === undefined) throw fail(at, 'a SunSpec point needs both model and offset');
      if (reg.functionCode !== 3) throw fail(`${at}/functionCode`, 'SunSpec points are holding registers: use function code 3');
      valueSpans.push({ field: `${at}/offset`, what: `${reg.quantity} at model ${reg.model} offset ${reg.offset}`, words, space: `model${reg.model}`, start: reg.offset });
    } else {
      if (reg.address === undefined) throw fail(at, 'needs an address (0-based protocol address), or a SunSpec model and offset');
      const last = reg.address + words - 1;
      if (last > MAX_ADDRESS) {
        throw fail(`${at}/address`, `${reg.dataType} at ${hex(reg.address)} runs past the last address ${hex(MAX_ADDRESS)}`);
      }
      valueSpans.push({ field: `${at}/address`, what: `${reg.quantity} at ${hex(reg.address)}`, words, space: spaceName(reg.functionCode), start: reg.address });
    }

    const sf = reg.scaleFactor;
    if (sf !== undefined) {
      if (point) {
        if (sf.offset === undefined || sf.address !== undefined || sf.functionCode !== undefined) {
          throw fail(`${at}/scaleFactor`, 'a SunSpec point names its scale factor by offset in the same model: { "offset": N }');
        }
        factorSpans.push({ field: `${at}/scaleFactor`, what: `scale factor of ${reg.quantity} (model ${reg.model} offset ${sf.offset})`, words: 1, space: `model${reg.model}`, start: sf.offset });
      } else {
        if (sf.address === undefined || sf.offset !== undefined) {
          throw fail(`${at}/scaleFactor`, 'a register located by address names its scale factor by address: { "address": N, "functionCode": 3 }');
        }
        const fc = sf.functionCode ?? reg.functionCode;
        factorSpans.push({ field: `${at}/scaleFactor`, what: `scale factor of ${reg.quantity} at ${hex(sf.address)}`, words: 1, space: spaceName(fc), start: sf.address });
      }
    }
  });

  const notMeasured = def.notMeasured ?? [];
  notMeasured.forEach((q, i) => {
    const mapped = def.registers.findIndex((r) => r.quantity === q);
    if (mapped >= 0) throw fail(`/notMeasured/${i}`, `${q} is mapped by /registers/${mapped}; a quantity is either mapped or not measured`);
    if (notMeasured.indexOf(q) !== i) throw fail(`/notMeasured/${i}`, `${q} is listed twice`);
  });
  if (notMeasured.length > 1) throw fail('/notMeasured', 'a device must measure import or export energy; at most one may be missing');

  for (const quantity of REQUIRED_QUANTITIES) {
    if (!def.registers.some((r) => r.quantity === quantity) && !notMeasured.some((q) => q === quantity)) {
      throw fail(
        '/registers',
        `no register for ${quantity}; ${REQUIRED_QUANTITIES.join(', ')} are required (list an energy the device does not count in notMeasured)`,
      );
    }
  }

  // One register per quantity: the decoder would otherwise have to guess which one counts.
  const seen = new Map<Quantity, number>();
  def.registers.forEach((reg, i) => {
    const previous = seen.get(reg.quantity);
    if (previous !== undefined) {
      throw fail(`/registers/${i}/quantity`, `${reg.quantity} is already mapped by /registers/${previous}`);
    }
    seen.set(reg.quantity, i);
  });

  checkOverlaps(valueSpans, factorSpans, fail);

  if (def.sunspec !== undefined && !def.registers.some(isModelPoint)) {
    throw fail('/sunspec', 'only definitions with SunSpec points (model and offset) are discovered through the SunSpec marker');
  }
  if (def.ranges !== undefined) checkRanges(def, def.ranges, fail);
  def.identification?.registers.forEach((check, i) => checkIdentify(check, `/identification/registers/${i}`, def, fail));
}

function overlaps(a: Span, b: Span): boolean {
  return a.space === b.space && a.start < b.start + b.words && b.start < a.start + a.words;
}

function checkOverlaps(values: Span[], factors: Span[], fail: Fail): void {
  // FC 3 and FC 4 (and each SunSpec model) are separate spaces; only spans in the same one can overlap.
  values.forEach((a, i) => {
    values.forEach((b, j) => {
      if (j <= i || !overlaps(a, b)) return;
      throw fail(b.field, `${b.what} (${b.words} words) overlaps ${a.what} (${a.words} words, ${a.field.replace(/\/(address|offset)$/, '')})`);
    });
  });
  for (const f of factors) {
    const hit = values.find((v) => overlaps(f, v));
    if (hit !== undefined) throw fail(f.field, `${f.what} overlaps ${hit.what}`);
  }
}

function inside(ranges: RegisterRanges, fc: FunctionCode, first: number, words: number): boolean {
  const last = first + words - 1;
  return (ranges[RANGE_TABLE[fc]] ?? []).some(([a, b]) => a <= first && last <= b);
}

/** Ranges in order and apart, and every addressed register inside one: a map the device would refuse is a typo. */
function checkRanges(def: DeviceDefinition, ranges: RegisterRanges, fail: Fail): void {
  for (const table of ['input', 'holding'] as const) {
    const list = ranges[table] ?? [];
    list.forEach(([first, last], i) => {
      if (first > last) {
        throw fail(`/ranges/${table}/${i}`, `first address ${hex(first)} is after last address ${hex(last)}`);
      }
      const previous = list[i - 1];
      if (previous !== undefined && first <= previous[1]) {
        throw fail(
          `/ranges/${table}/${i}`,
          `starts at ${hex(first)}, not after the previous range's last address ${hex(previous[1])}: list ranges in address order, apart`,
        );
      }
    });
  }
  def.registers.forEach((reg, i) => {
    if (reg.address === undefined) return;
    const words = WORDS_PER_TYPE[reg.dataType];
    if (!inside(ranges, reg.functionCode, reg.address, words)) {
      const table = RANGE_TABLE[reg.functionCode];
      throw fail(
        `/registers/${i}/address`,
        `${reg.quantity} at ${hex(reg.address)}..${hex(reg.address + words - 1)} lies outside every documented ${table} range (/ranges/${table})`,
      );
    }
    const sf = reg.scaleFactor;
    if (sf?.address !== undefined && !inside(ranges, sf.functionCode ?? reg.functionCode, sf.address, 1)) {
      throw fail(`/registers/${i}/scaleFactor/address`, `scale factor at ${hex(sf.address)} lies outside every documented ${RANGE_TABLE[sf.functionCode ?? reg.functionCode]} range`);
    }
  });
  def.identification?.registers.forEach((check, i) => {
    if (check.address === undefined) return;
    if (!inside(ranges, check.functionCode, check.address, identifyWords(check))) {
      throw fail(`/identification/registers/${i}/address`, `${check.label} at ${hex(check.address)} lies outside every documented ${RANGE_TABLE[check.functionCode]} range`);
    }
  });
}

/** Registers an identification check reads. */
export function identifyWords(check: Pick<IdentifyCheckDef, 'dataType' | 'words'>): number {
  if (check.dataType === 'string') return check.words ?? 1;
  return check.dataType === 'uint32' ? 2 : 1;
}

function checkIdentify(check: IdentifyCheckDef, at: string, def: DeviceDefinition, fail: Fail): void {
  const point = isModelPoint(check);
  if (point) {
    if (check.address !== undefined) throw fail(at, 'give either address or a SunSpec model and offset, not both');
    if (check.model === undefined || check.offset === undefined) throw fail(at, 'a SunSpec point needs both model and offset');
    if (check.functionCode !== 3) throw fail(`${at}/functionCode`, 'SunSpec points are holding registers: use function code 3');
    if (!def.registers.some(isModelPoint)) throw fail(at, 'SunSpec identification needs a definition with SunSpec points');
  } else if (check.address === undefined) {
    throw fail(at, 'needs an address, or a SunSpec model and offset');
  }
  const isString = check.dataType === 'string';
  if (isString && check.words === undefined) throw fail(`${at}/words`, 'a string needs words: the number of registers it occupies');
  if (!isString && check.words !== undefined && check.words !== identifyWords({ dataType: check.dataType })) {
    throw fail(`${at}/words`, `${check.dataType} occupies ${identifyWords({ dataType: check.dataType })} register(s)`);
  }
  if (check.oneOf === undefined && check.pattern === undefined) throw fail(at, 'needs oneOf (accepted values) or pattern (a regular expression)');
  if (check.pattern !== undefined && !isString) throw fail(`${at}/pattern`, 'pattern applies to strings; use oneOf for numbers');
  const max = check.dataType === 'uint16' ? 0xffff : 0xffffffff;
  const fits = (v: number | string): string | undefined => {
    if (isString) {
      if (typeof v !== 'string') return `expected a string, got ${JSON.stringify(v)}`;
      return v.length > identifyWords(check) * 2 ? `${JSON.stringify(v)} is longer than ${identifyWords(check) * 2} characters` : undefined;
    }
    return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max ? undefined : `expected an integer 0..${max}, got ${JSON.stringify(v)}`;
  };
  check.oneOf?.forEach((v, j) => {
    const problem = fits(v);
    if (problem !== undefined) throw fail(`${at}/oneOf/${j}`, problem);
  });
  let regex: RegExp | undefined;
  if (check.pattern !== undefined) {
    try {
      regex = new RegExp(check.pattern);
    } catch (err) {
      throw fail(`${at}/pattern`, `not a regular expression: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const example = check.example ?? check.oneOf?.[0];
  if (example === undefined) throw fail(`${at}/example`, 'a pattern needs an example value (what a simulator serves)');
  const problem = fits(example);
  if (problem !== undefined) throw fail(`${at}/example`, problem);
  if (regex !== undefined && !regex.test(String(example))) throw fail(`${at}/example`, `${JSON.stringify(example)} does not match the pattern ${check.pattern}`);
  if (check.oneOf !== undefined && !check.oneOf.includes(example)) throw fail(`${at}/example`, `${JSON.stringify(example)} is not among oneOf`);
}

// Which catalog model is this unit? For `gtx gateway scan`: identification registers first (a
// meter code, a type designation), then the SunSpec model chain, and only if neither settles it
// a plausibility probe (voltage and frequency through each remaining definition's map). Every
// request is cached, so definitions sharing registers share reads.
import { listDefinitions } from './catalog.ts';
import { decodeRaw, decodeString, exactNumber, powerOfTen } from './codec.ts';
import { identifyWords } from './definition-rules.ts';
import { RANGE_TABLE, usesSunSpec, WORDS_PER_TYPE, type DeviceDefinition, type FunctionCode, type IdentifyCheckDef, type RegisterDef } from './definition.ts';
import { planBlocks } from './plan.ts';
import { describeException, modbusExceptionCode, type RegisterReader } from './reader.ts';
import { checkAddress, modelsUsed, resolveMap, type ResolvedRegister } from './register-map.ts';
import { COMMON_MODEL_ID, discoverSunSpec, parseCommonModel, SUNSPEC_BASE_ADDRESSES, SunSpecError, type SunSpecLayout } from './sunspec.ts';

export type Verdict = 'identified' | 'plausible' | 'rejected' | 'not-probed';

export interface CandidateReport {
  id: string;
  verdict: Verdict;
  /** What was read and what it showed, one line each. */
  evidence: string[];
}

export interface IdentifyResult {
  /** The identified definitions, else the plausible ones; empty when nothing fits. */
  best: string[];
  /** Why `best` names more than one definition. */
  ambiguity?: string;
  /** Every candidate, in the order given. */
  candidates: CandidateReport[];
  /** Requests sent to the unit. */
  reads: number;
}

export interface IdentifyOptions {
  /** Plausible phase voltage in V; default 80..300. */
  volts?: [number, number];
  /** Plausible frequency in Hz; default 45..65. */
  hertz?: [number, number];
}

type Answer = { words: readonly number[] } | { exception: number } | { error: string };

const where = (fc: FunctionCode, address: number) => `${RANGE_TABLE[fc]} 0x${address.toString(16).padStart(4, '0')}`;

/** Reads through `read`, at most once per block: a later request inside a block already read is answered from it. */
class CachedReader {
  reads = 0;
  /** Requests the unit answered, with data or a Modbus exception. */
  answered = 0;
  /** The first error that was not a Modbus exception (timeout, closed connection). */
  firstError: string | undefined;
  private readonly blocks: { fc: FunctionCode; address: number; words: readonly number[] }[] = [];
  private readonly refused = new Map<string, Answer>();

  constructor(private readonly read: RegisterReader) {}

  async get(fc: FunctionCode, address: number, count: number): Promise<Answer> {
    const hit = this.blocks.find((b) => b.fc === fc && b.address <= address && address + count <= b.address + b.words.length);
    if (hit !== undefined) return { words: hit.words.slice(address - hit.address, address - hit.address + count) };
    const key = `${fc}:${address}:${count}`;
    const known = this.refused.get(key);
    if (known !== undefined) return known;
    this.reads++;
    try {
      const words = await this.read(fc, address, count);
      this.answered++;
      this.blocks.push({ fc, address, words });
      return { words: words.slice(0, count) };
    } catch (err) {
      const code = modbusExceptionCode(err);
      if (code !== undefined) this.answered++;
      else this.firstError ??= err instanceof Error ? err.message : String(err);
      const answer: Answer = code === undefined ? { error: err instanceof Error ? err.message : String(err) } : { exception: code };
      this.refused.set(key, answer);
      return answer;
    }
  }

  /** A RegisterReader over the cache that throws what the unit answered, for SunSpec discovery. */
  reader(): RegisterReader {
    return async (fc, address, count) => {
      const answer = await this.get(fc, address, count);
      if ('words' in answer) return answer.words;
      if ('exception' in answer) throw Object.assign(new Error(describeException(answer.exception)), { modbusCode: answer.exception });
      throw new Error(answer.error);
    };
  }
}

function refusal(answer: Exclude<Answer, { words: readonly number[] }>): string {
  return 'exception' in answer ? describeException(answer.exception) : `no answer (${answer.error})`;
}

/** Evidence line for one identification check, and whether it matched. */
function judgeCheck(check: IdentifyCheckDef, address: number, answer: Answer): { ok: boolean; line: string } {
  const at = `${where(check.functionCode, address)} (${check.label})`;
  if (!('words' in answer)) return { ok: false, line: `${at}: ${refusal(answer)}: not this model` };
  if (check.dataType === 'string') {
    const text = decodeString(answer.words);
    const ok = (check.oneOf ?? []).includes(text) || (check.pattern !== undefined && new RegExp(check.pattern).test(text));
    const expected = check.pattern !== undefined ? `matching /${check.pattern}/` : `one of ${(check.oneOf ?? []).map((v) => JSON.stringify(v)).join(', ')}`;
    return { ok, line: `${at} = ${JSON.stringify(text)}, ${ok ? '' : 'not '}${expected}` };
  }
  const value = Number(decodeRaw(check.dataType, 'big', answer.words));
  const ok = (check.oneOf ?? []).includes(value);
  return { ok, line: `${at} = ${value} (0x${value.toString(16).padStart(4, '0')}), ${ok ? '' : 'not '}one of ${(check.oneOf ?? []).join(', ')}` };
}

/** Phase voltage and frequency through a definition's map ('not-probed' when it maps neither). */
async function probe(def: DeviceDefinition, io: CachedReader, volts: [number, number], hertz: [number, number]): Promise<{ verdict: Verdict; lines: string[] }> {
  const map = resolveMap(def);
  const regs = map.registers.filter((r) => r.quantity === 'voltage' || r.quantity === 'frequency');
  if (regs.length === 0) return { verdict: 'not-probed', lines: ['no identification registers and neither voltage nor frequency to check'] };
  const spans = regs.flatMap((r) => [
    { functionCode: r.functionCode, address: r.address, count: WORDS_PER_TYPE[r.dataType] },
    ...(r.scaleFactor === undefined ? [] : [{ ...r.scaleFactor, count: 1 }]),
  ]);
  // The planned blocks first (fewest reads); if the unit refuses one, the exact registers, as a
  // real unit may answer fewer addresses than the definition documents.
  const words = new Map<string, number>();
  for (const block of planBlocks(spans, map.readable)) {
    let answer = await io.get(block.functionCode, block.address, block.count);
    if (!('words' in answer)) {
      for (const s of spans.filter((s) => s.functionCode === block.functionCode && s.address >= block.address && s.address < block.address + block.count)) {
        answer = await io.get(s.functionCode, s.address, s.count);
        if (!('words' in answer)) return { verdict: 'rejected', lines: [`${where(s.functionCode, s.address)}: ${refusal(answer)}: not this map`] };
        answer.words.forEach((w, i) => words.set(`${s.functionCode}:${s.address + i}`, w));
      }
      continue;
    }
    answer.words.forEach((w, i) => words.set(`${block.functionCode}:${block.address + i}`, w));
  }
  const lines: string[] = [];
  let ok = true;
  for (const r of regs) {
    const value = valueOf(r, words);
    const [lo, hi] = r.quantity === 'voltage' ? volts : hertz;
    const unit = r.quantity === 'voltage' ? 'V' : 'Hz';
    const fits = value !== undefined && value >= lo && value <= hi;
    ok &&= fits;
    lines.push(`${r.quantity} at ${where(r.functionCode, r.address)} = ${value === undefined ? 'no value' : `${+value.toFixed(3)} ${unit}`}, ${fits ? '' : 'not '}within ${lo}-${hi} ${unit}`);
  }
  return { verdict: ok ? 'plausible' : 'rejected', lines };
}

function valueOf(r: ResolvedRegister, words: ReadonlyMap<string, number>): number | undefined {
  const raw = Array.from({ length: WORDS_PER_TYPE[r.dataType] }, (_, i) => words.get(`${r.functionCode}:${r.address + i}`) ?? 0);
  const n = exactNumber(decodeRaw(r.dataType, r.wordOrder, raw));
  if (n === undefined || !Number.isFinite(n)) return undefined;
  let exponent = 0;
  if (r.scaleFactor !== undefined) {
    const w = words.get(`${r.scaleFactor.functionCode}:${r.scaleFactor.address}`) ?? 0;
    exponent = w >= 0x8000 ? w - 0x10000 : w;
  }
  return powerOfTen(n * r.scale, exponent);
}

/** What makes two definitions read a quantity the same way. */
function signature(reg: RegisterDef): string {
  const at = reg.model !== undefined ? `m${reg.model}+${reg.offset}` : `${reg.functionCode}:${reg.address}`;
  return `${reg.quantity}@${at}/${reg.dataType}/${reg.wordOrder}/${reg.scale}/${reg.unit}/${JSON.stringify(reg.scaleFactor ?? null)}`;
}

function explain(best: readonly DeviceDefinition[], verdict: Verdict): string {
  const names = best.map((d) => d.id).join(', ');
  const core = (d: DeviceDefinition) =>
    d.registers
      .filter((r) => r.quantity === 'importEnergy' || r.quantity === 'exportEnergy' || r.quantity === 'power')
      .map(signature)
      .sort()
      .join(';');
  const same = best.every((d) => core(d) === core(best[0] ?? d));
  const how =
    verdict === 'identified'
      ? 'each matched its identification registers'
      : 'none could be identified by its registers, and each read plausible voltage and frequency';
  return same
    ? `${names}: ${how}; they read energy and power from the same registers the same way, so any of them decodes this unit correctly; pick the model on the nameplate`
    : `${names}: ${how}, but they decode energy or power differently; check the nameplate before choosing`;
}

/**
 * Finds which of `candidates` (default: the whole catalog) the unit behind `read` is. Modbus
 * exceptions count as "not this model"; a unit that answers nothing at all is an error.
 */
export async function identify(read: RegisterReader, candidates: readonly DeviceDefinition[] = listDefinitions(), options: IdentifyOptions = {}): Promise<IdentifyResult> {
  const io = new CachedReader(read);
  const reports = new Map<string, CandidateReport>(candidates.map((d) => [d.id, { id: d.id, verdict: 'not-probed', evidence: [] }]));
  const report = (d: DeviceDefinition) => reports.get(d.id) ?? { id: d.id, verdict: 'not-probed', evidence: [] };
  const identified = () => candidates.some((d) => report(d).verdict === 'identified');

  // 1. Identification registers at fixed addresses (SunSpec ones wait for the chain).
  for (const def of candidates) {
    const checks = def.identification?.registers ?? [];
    if (usesSunSpec(def) || checks.length === 0) continue;
    const r = report(def);
    let ok = true;
    for (const check of checks) {
      const address = checkAddress(def, check);
      const judged = judgeCheck(check, address, await io.get(check.functionCode, address, identifyWords(check)));
      r.evidence.push(judged.line);
      ok &&= judged.ok;
      if (!ok) break;
    }
    r.verdict = ok ? 'identified' : 'rejected';
  }

  // 2. The SunSpec chain, for SunSpec definitions.
  const sunspec = candidates.filter(usesSunSpec);
  if (sunspec.length > 0 && !identified()) {
    const bases = [...new Set(sunspec.flatMap((d) => d.sunspec?.baseAddresses ?? SUNSPEC_BASE_ADDRESSES))];
    let layout: SunSpecLayout | undefined;
    let failure = '';
    try {
      layout = await discoverSunSpec(io.reader(), { bases });
    } catch (err) {
      // A unit that stays silent at 40000 (rather than answering an exception) is no SunSpec unit either.
      failure = err instanceof SunSpecError ? err.message : `no SunSpec marker: no answer (${err instanceof Error ? err.message : String(err)})`;
    }
    const chain = layout === undefined ? '' : `SunSpec marker at ${layout.base}; models ${layout.models.map((m) => `${m.id}@${m.address}`).join(', ')}`;
    let common = '';
    const model1 = layout?.models.find((m) => m.id === COMMON_MODEL_ID);
    if (model1 !== undefined) {
      const answer = await io.get(3, model1.address + 2, Math.min(model1.length, 64));
      if ('words' in answer) {
        const info = parseCommonModel(answer.words);
        common = `common model: manufacturer ${JSON.stringify(info.manufacturer)}, model ${JSON.stringify(info.model)}, serial ${JSON.stringify(info.serial)}`;
      }
    }
    for (const def of sunspec) {
      const r = report(def);
      if (layout === undefined) {
        r.verdict = 'rejected';
        r.evidence.push(failure);
        continue;
      }
      const missing = modelsUsed(def).filter((id) => !layout.models.some((m) => m.id === id));
      r.evidence.push(chain);
      if (missing.length > 0) {
        r.verdict = 'rejected';
        r.evidence.push(`model ${missing.join(', ')} not in the chain: not this kind of device`);
        continue;
      }
      if (common !== '') r.evidence.push(common);
      let ok = true;
      for (const check of def.identification?.registers ?? []) {
        const address = checkAddress(def, check, layout);
        const judged = judgeCheck(check, address, await io.get(check.functionCode, address, identifyWords(check)));
        r.evidence.push(judged.line);
        ok &&= judged.ok;
      }
      r.verdict = ok ? 'identified' : 'rejected';
    }
  }

  // 3. Plausibility, only when nothing identified itself.
  if (!identified()) {
    const volts = options.volts ?? [80, 300];
    const hertz = options.hertz ?? [45, 65];
    for (const def of candidates) {
      const r = report(def);
      if (r.verdict !== 'not-probed' || usesSunSpec(def)) continue;
      const { verdict, lines } = await probe(def, io, volts, hertz);
      r.verdict = verdict;
      r.evidence.push(...lines);
    }
  } else {
    for (const def of candidates) {
      const r = report(def);
      if (r.verdict === 'not-probed') r.evidence.push('not probed: another candidate identified itself');
    }
  }

  if (io.reads > 0 && io.answered === 0) {
    throw new Error(`the unit answered none of ${io.reads} requests (${io.firstError ?? 'no answer'}); check the host, port and unit id`);
  }

  const list = [...reports.values()];
  const pick = (v: Verdict) => candidates.filter((d) => report(d).verdict === v);
  const bestDefs = pick('identified').length > 0 ? pick('identified') : pick('plausible');
  const bestVerdict: Verdict = pick('identified').length > 0 ? 'identified' : 'plausible';
  return {
    best: bestDefs.map((d) => d.id),
    ...(bestDefs.length > 1 ? { ambiguity: explain(bestDefs, bestVerdict) } : {}),
    candidates: list,
    reads: io.reads,
  };
}

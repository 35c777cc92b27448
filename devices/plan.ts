// Block planning: read a definition's registers in as few requests as the device allows.
import { WORDS_PER_TYPE, type AddressRange, type FunctionCode } from './definition.ts';
import type { RegisterMap } from './register-map.ts';

/** Modbus limits one FC 3/4 request to 125 registers. */
export const MAX_REGISTERS_PER_READ = 125;

export interface ReadBlock {
  functionCode: FunctionCode;
  address: number;
  count: number;
}

/** Registers a reading needs: every value, every scale factor, every SunSpec model header. */
export function mapSpans(map: RegisterMap): ReadBlock[] {
  const spans: ReadBlock[] = [];
  for (const reg of map.registers) {
    spans.push({ functionCode: reg.functionCode, address: reg.address, count: WORDS_PER_TYPE[reg.dataType] });
    if (reg.scaleFactor !== undefined) spans.push({ ...reg.scaleFactor, count: 1 });
  }
  // Re-reading the ID and length words costs no request (they sit in the model's block) and
  // tells a poller when the device's layout changed under a cached discovery.
  for (const m of map.models) spans.push({ functionCode: 3, address: m.address, count: 2 });
  return spans;
}

function withinOne(ranges: readonly AddressRange[] | undefined, first: number, last: number): boolean {
  return (ranges ?? []).some(([a, b]) => a <= first && last <= b);
}

/**
 * Fewest blocks covering `spans`: spans of one function code share a block when the block stays
 * within 125 registers and either they touch or the whole block lies inside one `readable`
 * range (an address the device documents). Gaps outside documented ranges are never bridged,
 * because many meters answer "illegal data address" for unmapped registers. Greedy from the
 * lowest address, which is optimal for covering sorted intervals with bounded blocks.
 */
export function planBlocks(spans: readonly ReadBlock[], readable: ReadonlyMap<FunctionCode, readonly AddressRange[]>): ReadBlock[] {
  const sorted = [...spans].sort((a, b) => a.functionCode - b.functionCode || a.address - b.address || b.count - a.count);
  const blocks: ReadBlock[] = [];
  for (const span of sorted) {
    const last = blocks.at(-1);
    if (last !== undefined && last.functionCode === span.functionCode) {
      const end = Math.max(last.address + last.count, span.address + span.count);
      const count = end - last.address;
      const touches = span.address <= last.address + last.count;
      if (count <= MAX_REGISTERS_PER_READ && (touches || withinOne(readable.get(span.functionCode), last.address, end - 1))) {
        last.count = count;
        continue;
      }
    }
    blocks.push({ ...span });
  }
  return blocks;
}

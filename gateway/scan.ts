import { identify, type IdentifyResult } from '../devices/identify.ts';
import { modbusExceptionCode } from '../devices/reader.ts';
import { BusClient, BusOpenError } from './bus.ts';
import type { BusConfig } from './config.ts';

/**
 * `gtx gateway scan`: which unit ids answer on a bus, and which catalog model each is. A unit is
 * present when it answers a probe at all, with data or with a Modbus exception (a meter that
 * lacks register 0 still says so); silence within the timeout means nobody is there. Each
 * responder is then identified from the catalog (devices/identify.ts).
 */
export interface FoundUnit {
  unitId: number;
  identity: IdentifyResult;
}

/** Input register 0 (most meters), then holding register 0: any answer means a device. */
const PROBES: ReadonlyArray<[3 | 4, number]> = [
  [4, 0],
  [3, 0],
];

export async function scanBus(
  bus: BusConfig,
  units: readonly number[],
  opts: { timeoutMs: number; onProgress?: (done: number, total: number, found: number) => void },
): Promise<FoundUnit[]> {
  const io = new BusClient(bus);
  const found: FoundUnit[] = [];
  try {
    await io.connect(); // a port that cannot be opened fails the scan at once, not 247 times
    for (const [i, unitId] of units.entries()) {
      if (await present(io, unitId, opts.timeoutMs)) {
        // Identification reads more and larger blocks; a unit that answered gets a longer timeout.
        const identity = await identify((fc, address, count) => io.read(unitId, opts.timeoutMs * 4, fc, address, count));
        found.push({ unitId, identity });
      }
      opts.onProgress?.(i + 1, units.length, found.length);
    }
  } finally {
    await io.close();
  }
  return found;
}

async function present(io: BusClient, unitId: number, timeoutMs: number): Promise<boolean> {
  for (const [fc, address] of PROBES) {
    try {
      await io.read(unitId, timeoutMs, fc, address, 1);
      return true;
    } catch (e) {
      if (e instanceof BusOpenError) throw e;
      if (modbusExceptionCode(e) !== undefined) return true;
    }
  }
  return false;
}

/** "1-247", "1,2,10-12" → unit ids, each 1..247, in order, once. */
export function parseUnits(spec: string): number[] {
  const out = new Set<number>();
  for (const part of spec.split(',')) {
    const m = /^\s*(\d{1,3})\s*(?:-\s*(\d{1,3})\s*)?$/.exec(part);
    const from = m ? Number(m[1]) : NaN;
    const to = m?.[2] === undefined ? from : Number(m[2]);
    if (!m || from < 1 || to > 247 || from > to) throw new RangeError(`"${part.trim()}" is not a unit id range within 1-247 (e.g. 1-247 or 1,2,10-12)`);
    for (let u = from; u <= to; u++) out.add(u);
  }
  return [...out].sort((a, b) => a - b);
}

import type { DecodedReading } from '../../devices/decoder.ts';
import { RELEASE_FLOOR_MS } from '../../gateway/clock.ts';
import type { Sample } from '../../gateway/outbox.ts';
import { meterId } from '../../protocol/index.ts';

/** A reading gtx-publish refuses, and why (sent to the node's log and Catch nodes). */
export class ReadingInputError extends Error {
  override readonly name = 'ReadingInputError';
}

/** A reading stamped further ahead than this is a wrong clock: settlement would refuse it (future_timestamp). */
export const MAX_AHEAD_MS = 60_000;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * msg.payload → a sample to seal. Anything upstream in a flow can send anything, so every field
 * is checked against what the envelope allows (protocol/envelope.ts: safe integers, counters
 * never negative) and the gateway's clock rules (gateway/clock.ts): not before the release floor,
 * not in the future, and after the meter's last sealed reading; a sample that breaks them would
 * be refused by settlement or break the meter's chain, so it is not sealed.
 */
export function sampleFrom(payload: unknown, nowMs: number, lastReadingMs: (meter: string) => number | undefined): Sample {
  if (!isRecord(payload)) throw new ReadingInputError('msg.payload must be a reading object { meter, ts, importWh, exportWh, powerW, … } (as gtx-meter sends)');
  if (typeof payload.meter !== 'string') throw new ReadingInputError('msg.payload.meter must be the meter id (text)');
  let meter;
  try {
    meter = meterId(payload.meter);
  } catch (e) {
    throw new ReadingInputError(`msg.payload.meter: ${(e as Error).message}`);
  }
  const tsMs = typeof payload.ts === 'string' ? Date.parse(payload.ts) : typeof payload.ts === 'number' ? payload.ts : NaN;
  if (!Number.isSafeInteger(tsMs)) throw new ReadingInputError(`meter ${meter}: msg.payload.ts must be an ISO-8601 time or ms since 1970, got ${JSON.stringify(payload.ts)}`);
  if (tsMs < RELEASE_FLOOR_MS) throw new ReadingInputError(`meter ${meter}: reading time ${new Date(tsMs).toISOString()} is before ${new Date(RELEASE_FLOOR_MS).toISOString()}: is this machine's clock set (NTP)?`);
  if (tsMs > nowMs + MAX_AHEAD_MS) throw new ReadingInputError(`meter ${meter}: reading time ${new Date(tsMs).toISOString()} is in the future: is this machine's clock set (NTP)?`);
  const last = lastReadingMs(meter);
  if (last !== undefined && tsMs <= last) {
    throw new ReadingInputError(`meter ${meter}: reading time ${new Date(tsMs).toISOString()} is not after its last sealed reading (${new Date(last).toISOString()}): a replayed or out-of-order message`);
  }
  const int = (k: keyof DecodedReading, min: number, required: boolean): number | undefined => {
    const v = payload[k];
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      throw new ReadingInputError(`meter ${meter}: msg.payload.${k} must be a whole number${min === 0 ? ' ≥ 0' : ''}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const values: DecodedReading = {
    importWh: int('importWh', 0, true)!,
    exportWh: int('exportWh', 0, true)!,
    powerW: int('powerW', Number.MIN_SAFE_INTEGER, true)!,
  };
  for (const k of ['voltageMilliV', 'currentMilliA', 'frequencyMilliHz'] as const) {
    const v = int(k, 0, false);
    if (v !== undefined) values[k] = v;
  }
  return { meter, tsMs, values };
}

import type { EventHub } from './hub.ts';
import { readingEvent, type CommittedReading } from './live-events.ts';

/**
 * How old a committed reading may be and still go out as a live `reading` event. A gateway that
 * was offline replays its outbox (a day of readings, or the demo's three weeks): those are
 * history, not live power, and would flood every stream; they are in GET /meters/:id/readings.
 */
export const LIVE_READING_MAX_AGE_MS = 15 * 60_000;

/**
 * Committed readings to the hub as `reading` events, each tagged with its meter's owner account
 * so the hub can hand it to that account's subscribers only. Called on the ingest path after
 * every commit, so it costs one check while nobody subscribes, and looks an owner up (cached by
 * the caller) only for readings someone may receive. Readings of one meter keep their order:
 * the owner lookups of one meter resolve in call order.
 */
export function readingFeed(
  hub: EventHub,
  ownerOf: (meter: string) => Promise<string | undefined>,
  opts: { now: () => number; maxAgeMs?: number; onError?: (err: unknown) => void },
): (readings: readonly CommittedReading[]) => void {
  const maxAgeMs = opts.maxAgeMs ?? LIVE_READING_MAX_AGE_MS;
  const publish = (r: CommittedReading, owner: string | undefined) => {
    if (owner !== undefined && hub.wants(owner)) hub.publish(readingEvent(r, owner));
  };
  return (readings) => {
    if (!hub.active) return;
    const oldest = opts.now() - maxAgeMs;
    for (const r of readings) {
      if (Date.parse(r.ts) < oldest) continue;
      ownerOf(r.meter).then(
        (owner) => publish(r, owner),
        (e: unknown) => opts.onError?.(e),
      );
    }
  };
}

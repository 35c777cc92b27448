import type { KeyObject } from 'node:crypto';
import type { PowerProfile } from '../../devices/profiles.ts';
import { Outbox, type Sample } from '../../gateway/outbox.ts';
import { MAX_READINGS_PER_ENVELOPE, type GatewayId, type MeterId } from '../../protocol/index.ts';

/**
 * A new demo home's recorded past: readings every 15 minutes over the last `days`, integrated
 * from the same power profile its simulated meter runs on, signed with the gateway's key into
 * its outbox, as a gateway that had been cut off that long would hold them. On start the
 * gateway replays them through the broker like any backlog (store and forward), so the ledger
 * has the history that conservation baselines and certificates rest on from the first minute.
 * Returns the counters at the end, from which the live simulated meter continues.
 */
export function sealHistory(o: {
  outboxFile: string;
  gateway: GatewayId;
  key: KeyObject;
  meter: MeterId;
  /** W at an instant, positive = import (devices/profiles.ts), clamped to the meter's rating. */
  power: PowerProfile;
  maxPowerW: number;
  toMs: number;
  days: number;
}): { importKWh: number; exportKWh: number; readings: number } {
  const STEP_MS = 15 * 60_000;
  const SUB_MS = 60_000; // integration step: a profile changes within 15 minutes
  const end = Math.floor(o.toMs / STEP_MS) * STEP_MS;
  const start = end - o.days * 86_400_000;
  let importWh = 0;
  let exportWh = 0;
  const samples: Sample[] = [];
  for (let t = start; t <= end; t += STEP_MS) {
    if (t > start) {
      for (let s = t - STEP_MS; s < t; s += SUB_MS) {
        const w = Math.min(o.maxPowerW, Math.max(-o.maxPowerW, o.power(s)));
        if (w > 0) importWh += (w * SUB_MS) / 3_600_000;
        else exportWh += (-w * SUB_MS) / 3_600_000;
      }
    }
    const w = Math.round(Math.min(o.maxPowerW, Math.max(-o.maxPowerW, o.power(t))));
    samples.push({
      meter: o.meter,
      tsMs: t,
      values: { importWh: Math.floor(importWh), exportWh: Math.floor(exportWh), powerW: w, voltageMilliV: 230_000, frequencyMilliHz: 50_000 },
    });
  }
  const outbox = new Outbox(o.outboxFile);
  try {
    for (let i = 0; i < samples.length; i += MAX_READINGS_PER_ENVELOPE) outbox.seal(o.gateway, o.key, samples.slice(i, i + MAX_READINGS_PER_ENVELOPE));
  } finally {
    outbox.close();
  }
  return { importKWh: Math.floor(importWh) / 1000, exportKWh: Math.floor(exportWh) / 1000, readings: samples.length };
}

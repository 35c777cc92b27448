import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope, envelopeIdOf, signedBytes, topics, type Envelope, type Reading } from '../../protocol/index.ts';
import { splitIntoIntervals } from '../../settlement/energy/intervals.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * No energy is lost to readings that never arrive: once a gap has been open for the grace period
 * its energy (the counter difference across it) is booked as estimated, the API shows it so, and
 * a late fill replaces it with the exact split. The sum over the intervals is the counter's rise
 * throughout.
 */

const GW = 'gw-gap-energy';
const METER = 'm-gap';

interface IntervalJson {
  start: string;
  importWh: number;
  estimated: boolean;
  estimatedImportWh: number;
}

describe('energy across a gap', () => {
  const dir = tempDir();
  let settlement: Settlement;
  let client: MqttClient;
  let key: string;
  const f = new EnvelopeFactory(GW);
  const acked = new Set<string>();
  const rs: Reading[] = [];

  beforeAll(async () => {
    const cfg = settlementConfig(dir.path);
    cfg.ingest.gapGraceMs = 1_000;
    settlement = await startSettlement(cfg, { log: testLog('settlement') });
    await enrollTestGateway(settlement.ledger, GW, f.publicKeyPem, [METER]);
    key = (await new ApiKeyStore(settlement.ledger.db).create('utility')).key;
    client = await mqtt.connectAsync(settlement.brokerUrl, { clientId: 'gap-energy-test' });
    client.on('message', (_t, p) => {
      const body = JSON.parse(p.toString()) as { id: string; status?: string };
      if (body.status === 'accepted') acked.add(body.id);
    });
    await client.subscribeAsync(topics.ack(GW), { qos: 1 });
    // Nine readings 5 minutes apart over 40 minutes, the counter rising unevenly.
    const start = Date.now() - 2 * 3600_000;
    for (const [i, wh] of [0, 10, 35, 40, 90, 91, 130, 150, 201].entries()) {
      const r = f.nextReading(METER, { importWh: 1000 + wh }, start + i * 5 * 60_000);
      f.advance(r);
      rs.push(r);
    }
  });

  afterAll(async () => {
    await client?.endAsync();
    await settlement?.stop();
    dir.remove();
  });

  async function send(readings: Reading[]): Promise<void> {
    const env: Envelope = f.sign(readings);
    await client.publishAsync(topics.readings(GW), encodeEnvelope(env), { qos: 1 });
    const id = envelopeIdOf(signedBytes(env));
    await waitFor(() => acked.has(id), `ack of seq ${readings.map((r) => r.seq).join(',')}`);
  }

  async function get<T>(path: string): Promise<T> {
    const res = await fetch(`${settlement.httpUrl}${path}`, { headers: { authorization: `Bearer ${key}` } });
    expect(res.status, path).toBe(200);
    return (await res.json()) as T;
  }

  const range = () => {
    const from = new Date(Date.parse(rs[0]!.ts) - 3600_000).toISOString();
    const to = new Date(Date.now() + 3600_000).toISOString();
    return `from=${from}&to=${to}`;
  };
  const rise = () => rs[rs.length - 1]!.importWh - rs[0]!.importWh;

  it('books the energy across a gap as estimated once its grace is over, and the API shows it', async () => {
    // Readings 4 to 6 never arrive (say, refused for good and dead-lettered).
    await send(rs.slice(0, 3));
    await send(rs.slice(6));
    const gaps = await get<Array<{ fromSeq: number; toSeq: number; estimated: boolean }>>(`/api/v1/meters/${METER}/gaps`);
    expect(gaps.map(({ fromSeq, toSeq }) => [fromSeq, toSeq])).toEqual([[4, 6]]);
    const before = await get<IntervalJson[]>(`/api/v1/meters/${METER}/intervals?${range()}`);
    expect(before.reduce((n, r) => n + r.importWh, 0)).toBe(35 + 71);

    // The job books it once the gap is older than [ingest] gap_grace_s.
    await waitFor(async () => (await settlement.jobs.gapEstimates.runOnce())?.estimated === 1, 'the gap to be estimated');
    const rows = await get<IntervalJson[]>(`/api/v1/meters/${METER}/intervals?${range()}`);
    expect(rows.reduce((n, r) => n + r.importWh, 0)).toBe(rise());
    expect(rows.reduce((n, r) => n + r.estimatedImportWh, 0)).toBe(201 - 35 - 71);
    expect(rows.some((r) => r.estimated)).toBe(true);
    expect(rows.filter((r) => r.estimated).every((r) => r.estimatedImportWh > 0 || r.importWh === 0)).toBe(true);
    const market = await get<Array<{ demandWh: number; estimated: boolean; estimatedDemandWh: number }>>(`/api/v1/markets/${TEST_MARKET}/intervals?${range()}`);
    expect(market.reduce((n, r) => n + r.demandWh, 0)).toBe(rise());
    expect(market.reduce((n, r) => n + r.estimatedDemandWh, 0)).toBe(95);
    expect(market.some((r) => r.estimated)).toBe(true);
    expect((await get<Array<{ estimated: boolean }>>(`/api/v1/meters/${METER}/gaps`))[0]?.estimated).toBe(true);
  });

  it('replaces the estimate with the exact split when the missing readings arrive late', async () => {
    await send(rs.slice(3, 6));
    expect(await get<unknown[]>(`/api/v1/meters/${METER}/gaps`)).toEqual([]);
    const rows = await get<IntervalJson[]>(`/api/v1/meters/${METER}/intervals?${range()}`);
    expect(rows.reduce((n, r) => n + r.importWh, 0)).toBe(rise());
    expect(rows.every((r) => !r.estimated && r.estimatedImportWh === 0)).toBe(true);
    // Exactly each consecutive pair split over its intervals, as if all had arrived in order.
    const exact = new Map<number, number>();
    for (let i = 1; i < rs.length; i++) {
      const at = (r: Reading) => ({ tsMs: Date.parse(r.ts), importWh: r.importWh, exportWh: r.exportWh });
      for (const e of splitIntoIntervals(at(rs[i - 1]!), at(rs[i]!), 15 * 60_000, 'Asia/Bangkok')) exact.set(e.startMs, (exact.get(e.startMs) ?? 0) + e.importWh);
    }
    expect(rows.map((r) => [Date.parse(r.start), r.importWh])).toEqual([...exact.entries()].sort((a, b) => a[0] - b[0]));
  });
});

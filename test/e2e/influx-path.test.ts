import { InfluxDB } from 'influx';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope, topics } from '../../protocol/index.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { influxUrl } from '../support/influxd.ts';
import { requireOrSkip } from '../support/services.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const url = await influxUrl();
const skip = requireOrSkip('settlement → InfluxDB', !!url, 'no InfluxDB (set GTX_INFLUX_URL or install the Debian influxdb package)');

describe.skipIf(skip)('settlement writes verified readings and rejections to InfluxDB', () => {
  const dir = tempDir();
  const database = `gtx_e2e_${process.pid}_${Date.now()}`;
  let settlement: Settlement;
  let influx: InfluxDB;

  beforeAll(async () => {
    const cfg = settlementConfig(dir.path);
    cfg.influxdb = { url: url!, database, flushIntervalMs: 100, maxBacklogPoints: 10_000 };
    settlement = await startSettlement(cfg, { log: testLog('settlement') });
    const u = new URL(url!);
    influx = new InfluxDB({ host: u.hostname, port: Number(u.port), database });
  });
  afterAll(async () => {
    await settlement?.stop();
    await influx?.dropDatabase(database).catch(() => undefined);
    dir.remove();
  });

  it('mirrors the ledger in the readings and rejections measurements', async () => {
    const f = new EnvelopeFactory('gw-influx');
    await enrollTestGateway(settlement.ledger, 'gw-influx', f.publicKeyPem, ['meter-i']);
    const client = await mqtt.connectAsync(settlement.brokerUrl);
    for (let i = 0; i < 3; i++) await client.publishAsync(topics.readings('gw-influx'), encodeEnvelope(f.next('meter-i', 2)), { qos: 1 });
    await client.publishAsync(topics.readings('gw-influx'), 'not json', { qos: 1 });
    await client.endAsync();
    await waitFor(async () => (await settlement.ledger.counts()).rejections === 1 && (await settlement.ledger.counts()).readings === 6, 'ledger');

    const stored = await settlement.ledger.readings('meter-i');
    const rows = await waitFor(async () => {
      const r = await influx.query<{ import_wh: number; gateway: string; meter: string }>(
        `SELECT import_wh, gateway, meter FROM readings WHERE meter = 'meter-i'`,
      );
      return r.length === 6 ? r : undefined;
    }, 'six readings in InfluxDB');
    expect(rows.map((r) => r.import_wh)).toEqual(stored.map((r) => r.importWh));
    expect(new Set(rows.map((r) => r.gateway))).toEqual(new Set(['gw-influx']));
    const rej = await waitFor(async () => {
      const r = await influx.query<{ reason: string }>(`SELECT "count", reason FROM rejections`);
      return r.length === 1 ? r : undefined;
    }, 'the rejection in InfluxDB');
    expect(rej[0]!.reason).toBe('invalid_json');
    expect(settlement.influx!.stats().failedWrites).toBe(0);
  });
});

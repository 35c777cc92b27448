import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { loadGatewayConfig } from '../../gateway/config.ts';
import { defaultSettlementConfig, loadSettlementConfig } from '../../settlement/config.ts';

const dir = join(import.meta.dirname, '../../config');

describe('the example configuration files', () => {
  it('settlement.toml loads with the market and defaults the README describes', () => {
    const cfg = loadSettlementConfig(join(dir, 'settlement.toml'));
    expect(cfg.markets).toEqual([{ id: 'thailand_central', name: 'Thailand Central', timeZone: 'Asia/Bangkok', intervalMinutes: 15, rules: defaultSettlementConfig().markets[0]!.rules, holidays: [] }]);
    // The file states the market defaults of the issue: 4.0 THB/kWh, 2.0, 1.0, 300 s, 0.01; 30 min, 06:00–22:00, 1 kWh, 0.50.
    expect(cfg.markets[0]!.rules).toEqual({
      currency: 'THB',
      pricing: { pBalance: 400n, pCon: 200n, k: 1, minRatio: 0.01, updateIntervalMs: 300_000 },
      auction: { intervalMinutes: 30, openMinute: 360, closeMinute: 1320, minVolumeWh: 1000, maxPriceDeviationPpm: 500_000 },
    });
    expect(cfg.credits).toEqual(defaultSettlementConfig().credits);
    expect(cfg.mqtt).toMatchObject({ mode: 'embedded', listenHost: '127.0.0.1', listenPort: 1883, auth: true });
    expect(cfg.http).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(cfg.ingest).toEqual({
      maxPayloadBytes: 262144,
      maxClockSkewMs: 300_000,
      commitBatchMax: 512,
      maxBackfillMs: 35 * 86_400_000,
      gapGraceMs: 3600_000,
      commitTimeoutMs: 10_000,
      maxQueuedEnvelopes: 4096,
      maxQueuedBytes: 64 * 1024 * 1024,
      rejectionSamplesPerMinute: 30,
      rejectionSampleBytes: 4096,
      rejectionRetentionMs: 30 * 86_400_000,
    });
    // The file states the defaults: loading it changes nothing.
    expect(cfg.ingest).toEqual(defaultSettlementConfig(cfg.dataDir).ingest);
  });

  it('[ingest] takes commits_in_flight, and refuses nonsense with the file and key named', () => {
    const d = tempDir();
    try {
      const file = join(d.path, 'settlement.toml');
      writeFileSync(file, '[ingest]\ncommits_in_flight = 2\ncommit_batch_max = 64\n');
      expect(loadSettlementConfig(file).ingest).toMatchObject({ commitsInFlight: 2, commitBatchMax: 64 });
      writeFileSync(file, '[ingest]\ncommits_in_flight = 0\n');
      expect(() => loadSettlementConfig(file)).toThrow(/commits_in_flight/);
    } finally {
      d.remove();
    }
  });

  it('gateway.toml loads its meter with role and energy source', () => {
    const cfg = loadGatewayConfig(join(dir, 'gateway.toml'));
    expect(cfg.id).toBe('gw-home-1');
    expect(cfg.meters).toHaveLength(1);
    expect(cfg.meters[0]).toMatchObject({ id: 'home-1-main', bus: '127.0.0.1:5020', unitId: 1, timeoutMs: 1000, role: 'bidirectional', energySource: 'Solar' });
    expect(cfg.buses).toEqual([{ kind: 'tcp', name: '127.0.0.1:5020', host: '127.0.0.1', port: 5020, connectTimeoutMs: 3000 }]);
    expect(cfg.meters[0]!.definition.id).toBe('eastron-sdm120');
  });
});

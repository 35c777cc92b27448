import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope, topics } from '../../protocol/index.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { startSettlement } from '../../settlement/main.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const GTX = join(import.meta.dirname, '../../bin/gtx.js');
const gtx = (args: string[]) => spawnSync(process.execPath, [GTX, ...args], { encoding: 'utf8', env: { ...process.env, GTX_LOG_LEVEL: 'warn' } });

describe('gtx audit export', () => {
  const dir = tempDir();
  const configFile = join(dir.path, 'settlement.toml');
  const out = join(dir.path, 'export');

  beforeAll(async () => {
    writeFileSync(configFile, `[settlement]\ndata_dir = "data"\n[mqtt]\nlisten = "127.0.0.1:0"\n`);
    const cfg = settlementConfig(join(dir.path, 'unused'));
    cfg.ledger.sqlitePath = join(dir.path, 'data', 'ledger.sqlite');
    const settlement = await startSettlement(cfg, { log: testLog('settlement') });
    const f = new EnvelopeFactory('gw-audit');
    await enrollTestGateway(settlement.ledger, 'gw-audit', f.publicKeyPem, ['meter-a', 'meter-b']);
    const client = await mqtt.connectAsync(settlement.brokerUrl);
    for (let i = 0; i < 5; i++) await client.publishAsync(topics.readings('gw-audit'), encodeEnvelope(f.next('meter-a', 3)), { qos: 1 });
    await client.publishAsync(topics.readings('gw-audit'), encodeEnvelope(f.next('meter-b', 2)), { qos: 1 });
    await waitFor(async () => (await settlement.ledger.counts()).readings === 17, '17 readings');
    await client.endAsync();
    await settlement.stop();
  });
  afterAll(() => dir.remove());

  it('lists the meters of the ledger', () => {
    const r = gtx(['audit', 'meters', '--config', configFile]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['meter-a\t15 readings\tlast seq 15', 'meter-b\t2 readings\tlast seq 2']);
  });

  it('writes files that openssl alone verifies, and a changed byte fails', () => {
    const r = gtx(['audit', 'export', '--meter', 'meter-a', '--out', out, '--config', configFile]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/wrote 5 envelopes of meter meter-a .*5 verified, 0 failed/);
    const bins = readdirSync(out).filter((n) => n.endsWith('.bin')).sort();
    expect(bins).toHaveLength(5);
    expect(readdirSync(out)).toContain('gw-audit.pem');
    for (const bin of bins) {
      const base = join(out, bin.slice(0, -4));
      expect(readFileSync(`${base}.sig`)).toHaveLength(64);
      const ok = execFileSync(
        'openssl',
        ['pkeyutl', '-verify', '-pubin', '-inkey', join(out, 'gw-audit.pem'), '-rawin', '-in', `${base}.bin`, '-sigfile', `${base}.sig`],
        { encoding: 'utf8' },
      );
      expect(ok).toContain('Signature Verified Successfully');
    }
    const first = join(out, bins[0]!.slice(0, -4));
    const bytes = readFileSync(`${first}.bin`);
    bytes[10] = bytes[10]! ^ 1;
    writeFileSync(`${first}.bin`, bytes);
    const bad = spawnSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', join(out, 'gw-audit.pem'), '-rawin', '-in', `${first}.bin`, '-sigfile', `${first}.sig`], {
      encoding: 'utf8',
    });
    expect(bad.status).not.toBe(0);
    expect(bad.stdout + bad.stderr).toMatch(/Signature Verification Failure/);
  });

  it('explains an unknown meter and a missing flag instead of crashing', () => {
    const unknown = gtx(['audit', 'export', '--meter', 'nope', '--out', join(dir.path, 'x'), '--config', configFile]);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/no envelopes for meter nope/);
    const missing = gtx(['audit', 'export', '--config', configFile]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/--meter is required/);
    expect(missing.stderr).not.toMatch(/at .*\.ts:\d+/);
  });
});

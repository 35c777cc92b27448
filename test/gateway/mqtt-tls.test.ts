import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayConfigError, loadGatewayConfig } from '../../gateway/config.ts';
import { startGateway } from '../../gateway/main.ts';
import type { Settlement } from '../../settlement/main.ts';
import { startSettlement } from '../../settlement/main.ts';
import { capturedLog } from './captured-log.ts';
import { enrollGatewayConfig, gatewayConfig, settlementConfig, startSimulator, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * A gateway publishing over TLS (mqtts://) to a broker whose certificate a private CA signed:
 * with [mqtt] ca_file it verifies the broker and its readings are acknowledged; without it the
 * connection is refused, never downgraded, and the readings wait in the outbox.
 */
describe('gateway over MQTT TLS', { timeout: 60_000 }, () => {
  const dir = tempDir('gtx-gw-tls-');
  let settlement: Settlement;
  let caFile = '';
  beforeAll(async () => {
    const key = join(dir.path, 'broker.key');
    caFile = join(dir.path, 'broker.crt');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ed25519', '-keyout', key, '-out', caFile, '-days', '2', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], {
      stdio: 'pipe',
    });
    const cfg = settlementConfig(dir.path, 0, true);
    cfg.mqtt = { mode: 'embedded', listenHost: '127.0.0.1', listenPort: 0, clientId: 'gtx-settlement-tls-test', auth: true, tls: { keyFile: key, certFile: caFile, host: '127.0.0.1', port: 0 } };
    settlement = await startSettlement(cfg, { log: testLog('settlement') });
  });
  afterAll(async () => {
    await settlement?.stop();
    dir.remove();
  });

  it('verifies the broker with ca_file and gets its readings acknowledged; without it nothing is sent', async () => {
    expect(settlement.brokerTlsUrl).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    const sim = await startSimulator('sdm120', 'household', 9);
    try {
      const trusted = gatewayConfig(dir.path, 'gw-tls', settlement.brokerTlsUrl!, [{ id: 'tls-1', model: 'sdm120', port: sim.port }]);
      trusted.mqtt.caFile = caFile;
      await enrollGatewayConfig(settlement, trusted);
      trusted.mqtt.url = settlement.brokerTlsUrl!; // enrollment saved the plain URL; the config names the TLS one on purpose
      const gw = await startGateway(trusted, { log: testLog('gateway') });
      await waitFor(() => gw.stats().acked >= 2, 'readings acknowledged over TLS');
      await gw.stop();

      const untrusting = gatewayConfig(dir.path, 'gw-notls', settlement.brokerTlsUrl!, [{ id: 'tls-2', model: 'sdm120', port: sim.port }]);
      await enrollGatewayConfig(settlement, untrusting);
      untrusting.mqtt.url = settlement.brokerTlsUrl!;
      const { log, warnings } = capturedLog();
      const refused = await startGateway(untrusting, { log });
      await waitFor(() => warnings(/^broker unreachable/).length > 0, 'the untrusted broker refused');
      await waitFor(() => refused.outboxDepth() >= 2, 'readings waiting in the outbox');
      expect(refused.stats().acked).toBe(0);
      await refused.stop();
    } finally {
      await sim.sim.stop();
    }
  });

  it('refuses TLS settings that cannot work, naming the key', () => {
    const file = (text: string) => {
      const p = join(dir.path, `gw-${Math.random().toString(36).slice(2)}.toml`);
      writeFileSync(p, `[gateway]\nid = "gw-x"\n[mqtt]\n${text}`);
      return p;
    };
    expect(() => loadGatewayConfig(file('ca_file = "nope.pem"\n'))).toThrow(/\[mqtt\]: ca_file .*nope\.pem: no such file/);
    expect(() => loadGatewayConfig(file(`cert_file = ${JSON.stringify(caFile)}\n`))).toThrow(GatewayConfigError);
    expect(() => loadGatewayConfig(file(`cert_file = ${JSON.stringify(caFile)}\n`))).toThrow(/cert_file and key_file go together/);
    expect(loadGatewayConfig(file(`ca_file = ${JSON.stringify(caFile)}\n`)).mqtt.caFile).toBe(caFile);
  });
});

import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENROLLMENT_PATH, gatewayClientId, gatewayId, generateGatewayKeyPair } from '../../protocol/index.ts';
import { hashSecret, newSecret } from '../../settlement/broker/credentials.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { settlementConfig } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * Reserved names (protocol/ids.ts isReservedId): no gateway is enrolled under a name that
 * belongs to the settlement, and one stored by an older release never logs in as a gateway.
 * The embedded broker with auth, backed by the ledger (LedgerCredentialStore).
 */
describe('reserved names on the embedded broker and at enrollment', () => {
  const dir = tempDir('gtx-broker-identity-');
  const logLines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void logLines.push(JSON.parse(s) as Record<string, unknown>) });
  const clients: MqttClient[] = [];
  const secret = newSecret();
  let settlement: Settlement;

  beforeAll(async () => {
    settlement = await startSettlement(settlementConfig(dir.path, 0, true), { log });
    // As an older release could have stored them: straight into the registry, past enrollment.
    for (const id of ['gtx-settlement-2', 'GTX-Settlement', 'gw-fine']) {
      await settlement.ledger.putGateway({
        id: gatewayId(id),
        publicKeyPem: generateGatewayKeyPair().publicKeyPem,
        status: 'active',
        createdAtMs: Date.now(),
        mqttSecretHash: hashSecret(secret),
      });
    }
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await settlement?.stop();
    dir.remove();
  });

  const options = (username: string, password: string): IClientOptions => ({
    clientId: gatewayClientId(username),
    username,
    password,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
  });

  async function loginCode(username: string, password: string): Promise<number> {
    return mqtt.connectAsync(settlement.brokerUrl, options(username, password)).then(
      (c) => (clients.push(c), 0),
      (e: { code?: number }) => e.code ?? -1,
    );
  }

  it('refuses a stored gateway with a reserved name and its right secret (5), and logs why', async () => {
    expect(await loginCode('gtx-settlement-2', secret)).toBe(5);
    expect(await loginCode('GTX-Settlement', secret)).toBe(5);
    const line = await waitFor(() => logLines.find((l) => l.username === 'gtx-settlement-2' && l.msg === 'mqtt login refused'), 'the refusal in the log');
    expect(line).toMatchObject({ level: 40, returnCode: 5, reason: 'reserved name: not a gateway', component: 'broker' });
    // A wrong secret is just a wrong password: nothing is told about the record.
    expect(await loginCode('gtx-settlement-2', 'guess')).toBe(4);
    // The same kind of record under an ordinary name logs in.
    expect(await loginCode('gw-fine', secret)).toBe(0);
  });

  async function enroll(code: string, gateway: string, meter: string): Promise<Response> {
    return fetch(`${settlement.httpUrl}${ENROLLMENT_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        code,
        gateway,
        publicKeyPem: generateGatewayKeyPair().publicKeyPem,
        meters: [{ id: meter, model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 9000 }],
      }),
    });
  }

  it.each(['gtx-settlement', 'GTX-Settlement-2'])('answers POST /api/v1/enrollments for gateway %j with 400 reserved_id and writes nothing', async (gateway) => {
    const { code } = await settlement.enrollment.issueCode({ market: 'thailand_central', owner: 'mallory', ttlMs: 3600_000 });
    const meter = `${gateway.toLowerCase()}-meter`;
    const res = await enroll(code, gateway, meter);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe('reserved_id');
    expect(body.message).toMatch(/reserved for the settlement/);
    expect(await settlement.ledger.getGateway(gateway)).toBeUndefined();
    expect(await settlement.ledger.getMeter(meter)).toBeUndefined();
    // The code is not spent: an ordinary gateway enrolls with it.
    const ok = await enroll(code, `gw-after-${gateway.toLowerCase()}`, `${meter}-ok`);
    expect(ok.status).toBe(201);
  });
});

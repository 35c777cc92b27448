import { join } from 'node:path';
import { pino } from 'pino';
import { getDefinition } from '../../devices/catalog.ts';
import { MeterSimulator } from '../../devices/simulator.ts';
import type { ProfileName } from '../../devices/profiles.ts';
import { gatewayDefaults, tcpBus, type GatewayConfig } from '../../gateway/config.ts';
import { saveCredentials } from '../../gateway/enroll.ts';
import { loadOrCreateKey } from '../../gateway/keys.ts';
import { startGateway, type Gateway } from '../../gateway/main.ts';
import { meterId } from '../../protocol/index.ts';
import { defaultSettlementConfig, type SettlementConfig } from '../../settlement/config.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { enrollTestGateway } from './registry.ts';

/** Quiet loggers for tests; GTX_TEST_LOG=debug shows them. */
export const testLog = (name: string) => pino({ name, level: process.env.GTX_TEST_LOG ?? 'silent' });

/**
 * Embedded broker on `port` (0 = free). `auth` off lets ingest tests publish anything as
 * anyone, to prove the settlement's own checks; the end-to-end tests turn it on.
 */
export function settlementConfig(dir: string, port = 0, auth = false): SettlementConfig {
  const cfg = defaultSettlementConfig(join(dir, 'settlement'));
  cfg.mqtt = { mode: 'embedded', listenHost: '127.0.0.1', listenPort: port, clientId: 'gtx-settlement-test', auth };
  cfg.http = { host: '127.0.0.1', port: 0 };
  return cfg;
}

export async function startTestSettlement(dir: string, port = 0, auth = false): Promise<Settlement> {
  return startSettlement(settlementConfig(dir, port, auth), { log: testLog('settlement') });
}

export async function startSimulator(model: string, profile: ProfileName, seed = 1): Promise<{ sim: MeterSimulator; port: number }> {
  const sim = new MeterSimulator({ definition: getDefinition(model), profile, seed });
  const { port } = await sim.start({ port: 0 });
  return { sim, port };
}

/** A gateway config for meters on local simulators, with fast polling for tests. */
export function gatewayConfig(
  dir: string,
  id: string,
  brokerUrl: string,
  meters: Array<{ id: string; model: string; port: number }>,
): GatewayConfig {
  const cfg = gatewayDefaults(id, join(dir, `gw-${id}`));
  cfg.pollIntervalMs = 100;
  cfg.batchMaxReadings = 4;
  cfg.batchMaxAgeMs = 300;
  cfg.mqtt = { url: brokerUrl, ackTimeoutMs: 2_000, maxInFlight: 8 };
  cfg.meters = meters.map((m) => ({
    id: meterId(m.id),
    definition: getDefinition(m.model),
    role: 'bidirectional' as const,
    ratedPowerW: getDefinition(m.model).maxPowerW,
    energySource: 'Solar' as const,
    bus: tcpBus(cfg, '127.0.0.1', m.port),
    unitId: 1,
    timeoutMs: 1_000,
  }));
  return cfg;
}

/**
 * Creates the gateway's key and registers it and its meters with the settlement ledger, the way
 * an installer's code does; keeps the MQTT login (with the settlement's broker URL) for the gateway.
 */
export async function enrollGatewayConfig(settlement: Settlement, cfg: GatewayConfig): Promise<void> {
  const key = loadOrCreateKey(cfg.keyFile);
  const res = await enrollTestGateway(
    settlement.ledger,
    cfg.id,
    key.publicKeyPem,
    cfg.meters.map((m) => ({ id: m.id, model: m.definition.id, role: m.role, ratedPowerW: m.ratedPowerW, energySource: m.energySource })),
  );
  saveCredentials(cfg.dataDir, { ...res.mqtt, url: settlement.brokerUrl, market: res.market });
}

/** enrollGatewayConfig, then starts the gateway. */
export async function startRegisteredGateway(settlement: Settlement, cfg: GatewayConfig): Promise<Gateway> {
  await enrollGatewayConfig(settlement, cfg);
  return startGateway(cfg, { log: testLog('gateway') });
}

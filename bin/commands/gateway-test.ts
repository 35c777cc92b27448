import { pino } from 'pino';
import { createDecoder } from '../../devices/decoder.ts';
import { BusClient } from '../../gateway/bus.ts';
import { ClockGuard } from '../../gateway/clock.ts';
import { busUrl, loadGatewayConfig } from '../../gateway/config.ts';
import { brokerSettings } from '../../gateway/enroll.ts';
import { loadOrCreateKey } from '../../gateway/keys.ts';
import { describeReading, wiringWarnings } from '../../gateway/meter-check.ts';
import { Outbox, type Sample } from '../../gateway/outbox.ts';
import { tlsFiles } from '../../gateway/main.ts';
import { Publisher } from '../../gateway/publisher.ts';
import { CliError, command, parseFlags } from '../args.ts';

export const TEST = command(
  'gateway test',
  `gtx gateway test [--no-publish] [--config FILE]
      read each configured meter once and show its values (kWh, W, V, Hz), warn of a reversed
      current transformer or a missing phase, then publish one signed reading of each and wait
      for settlement's acknowledgement; exit 1 if a meter did not answer or nothing was acknowledged

  --no-publish   only read the meters (before enrollment)
  --config FILE  the gateway config (default ./gateway.toml)`,
  { 'no-publish': { type: 'boolean' }, config: { type: 'string' } },
);

export async function testGateway(argv: string[], configPath: (flag: string | undefined) => string): Promise<void> {
  const f = parseFlags(argv, TEST);
  const config = configPath(f.config);
  const cfg = loadGatewayConfig(config);
  if (cfg.meters.length === 0) throw new CliError(`${config} has no [[meters]]: gtx gateway scan finds them, or add them by hand`);

  const samples: Sample[] = [];
  let failed = 0;
  let warned = 0;
  for (const bus of cfg.buses) {
    const meters = cfg.meters.filter((m) => m.bus === bus.name);
    if (meters.length === 0) continue;
    console.log(`bus ${bus.name} (${busUrl(bus)})`);
    const io = new BusClient(bus);
    try {
      for (const m of meters) {
        try {
          const values = await createDecoder(m.definition).read((fc, address, count) => io.read(m.unitId, m.timeoutMs, fc, address, count));
          console.log(`  ${m.id} (${m.definition.id}, unit ${m.unitId}, ${m.role}): ${describeReading(values)}`);
          for (const w of wiringWarnings(values, m.role)) {
            warned++;
            console.log(`    WARNING: ${w}`);
          }
          samples.push({ meter: m.id, tsMs: Date.now(), values });
        } catch (e) {
          failed++;
          console.log(`  ${m.id} (${m.definition.id}, unit ${m.unitId}): NO ANSWER: ${(e as Error).message}`);
        }
      }
    } finally {
      await io.close();
    }
  }
  console.log(`${cfg.meters.length - failed} of ${cfg.meters.length} meter(s) answered${warned ? `, ${warned} warning(s)` : ''}`);
  if (f['no-publish'] || samples.length === 0) {
    if (failed) process.exitCode = 1;
    return;
  }
  const ok = await publishOnce(cfg, samples);
  if (failed || !ok) process.exitCode = 1;
}

/**
 * Seals the readings just taken as one envelope in the gateway's outbox (so they are part of
 * each meter's chain, as the service's would be) and publishes until settlement answers it.
 */
async function publishOnce(cfg: ReturnType<typeof loadGatewayConfig>, samples: Sample[]): Promise<boolean> {
  const key = loadOrCreateKey(cfg.keyFile);
  const outbox = new Outbox(cfg.outboxFile);
  const log = pino({ level: process.env.GTX_LOG_LEVEL ?? 'silent' }, pino.destination(2));
  const broker = brokerSettings(cfg);
  if (broker.source === 'default') {
    outbox.close();
    throw new CliError('this gateway is not enrolled yet (no MQTT login): gtx gateway enroll --url URL --code CODE first, or use --no-publish');
  }
  // The same clock rules as the service: never seal a reading older than the chain's newest.
  const clock = new ClockGuard({ log, lastReadingMs: outbox.meterHeads().flatMap((h) => (h.tsMs === null ? [] : [[h.meter, h.tsMs] as const])) });
  const stamped = samples.flatMap((s) => clock.stamp(s.meter, s.values));
  if (stamped.length === 0) {
    outbox.close();
    throw new CliError(`the gateway's clock is implausible (${clock.state().problem}): not publishing; check NTP (gtx gateway status)`);
  }
  const entry = outbox.seal(cfg.id, key.privateKey, stamped)!;
  const ahead = outbox.depth() - 1;
  const publisher = new Publisher({ url: broker.url, username: broker.username, password: broker.password, tls: tlsFiles(cfg), gateway: cfg.id, ackTimeoutMs: cfg.mqtt.ackTimeoutMs, maxInFlight: cfg.mqtt.maxInFlight }, outbox, log);
  console.log(`publishing envelope ${entry.id.slice(0, 12)} (${entry.readings} reading(s)) to ${broker.url}${ahead > 0 ? ` after ${ahead} older envelope(s) in the outbox` : ''}…`);
  const waitMs = cfg.mqtt.ackTimeoutMs * 2 + 5_000;
  const until = Date.now() + waitMs;
  await publisher.start();
  try {
    while (outbox.has(entry.id) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  } finally {
    await publisher.stop();
  }
  const waiting = outbox.has(entry.id);
  const dead = outbox.listDeadLetters(1000).find((d) => d.id === entry.id);
  outbox.close();
  if (dead) {
    console.log(`REFUSED by settlement: ${dead.reason}: ${dead.detail}`);
    return false;
  }
  if (!waiting) {
    console.log(`acknowledged by settlement: the gateway is ready (gtx gateway run)`);
    return true;
  }
  console.log(`no acknowledgement within ${Math.round(waitMs / 1000)} s: is settlement running, and is ${broker.url} its broker? (gtx gateway status)`);
  return false;
}

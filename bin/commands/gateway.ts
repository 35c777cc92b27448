import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { RELEASE_FLOOR_MS, iso, type ClockState } from '../../gateway/clock.ts';
import { gatewayDefaults, loadGatewayConfig } from '../../gateway/config.ts';
import { loadOrCreateKey } from '../../gateway/keys.ts';
import { startGateway } from '../../gateway/main.ts';
import { brokerSettings, enroll, EnrollError } from '../../gateway/enroll.ts';
import { Outbox } from '../../gateway/outbox.ts';
import type { AckWait } from '../../gateway/publisher.ts';
import { REJECT_REASONS, gatewayId } from '../../protocol/index.ts';
import { parseFlags, required, UsageError } from '../args.ts';

const USAGE = `gtx gateway init --id ID [--data-dir DIR] [--write-config FILE]
      create the gateway key (mode 0600) and write its public key next to it
gtx gateway enroll --config FILE --url SETTLEMENT_HTTP_URL --code CODE
      register this gateway and its meters with the installer's one-time code; saves the MQTT
      login and broker URL, and continues each meter's chain where settlement has it
gtx gateway run --config FILE
      poll the configured meters and publish signed readings
gtx gateway status --config FILE
      broker, clock, outbox depth, last ack, envelopes waiting to be retried, dead letters,
      and each meter's last seq
gtx gateway requeue --config FILE [--reason REASON]
      move dead letters (all, or those refused for REASON) back into the outbox, in their
      original order; works while the gateway runs`;

export async function run(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || rest.includes('--help') || rest.includes('-h')) {
    console.log(USAGE);
    return;
  }
  switch (sub) {
    case 'init': {
      const f = parseFlags(rest, { id: { type: 'string' }, 'data-dir': { type: 'string' }, 'write-config': { type: 'string' } }, USAGE);
      const id = gatewayId(required(f.id, '--id', USAGE));
      const dataDir = resolve(f['data-dir'] ?? `./data/gateways/${id}`);
      const cfg = gatewayDefaults(id, dataDir);
      const key = loadOrCreateKey(cfg.keyFile);
      const pubFile = join(dataDir, 'gateway.pub.pem');
      writeFileSync(pubFile, key.publicKeyPem);
      console.log(`${key.created ? 'created' : 'kept existing'} key ${cfg.keyFile} (mode 0600)`);
      console.log(`public key ${pubFile}; enroll with an installer code: gtx gateway enroll --config FILE --url URL --code CODE`);
      const out = f['write-config'];
      if (out) {
        if (existsSync(out)) throw new UsageError(`${out} exists; not overwriting it`, USAGE);
        writeFileSync(out, configTemplate(id, dataDir));
        console.log(`wrote ${out}: add your meters under [[meters]]`);
      }
      return;
    }
    case 'enroll': {
      const f = parseFlags(rest, { config: { type: 'string' }, url: { type: 'string' }, code: { type: 'string' } }, USAGE);
      const cfg = loadGatewayConfig(required(f.config, '--config', USAGE));
      if (cfg.meters.length === 0) throw new UsageError(`${f.config} has no [[meters]] to enroll`, USAGE);
      try {
        const res = await enroll(cfg, required(f.url, '--url', USAGE), required(f.code, '--code', USAGE));
        console.log(`gateway ${res.gateway} enrolled in ${res.market} for ${res.owner}: meters ${res.meters.join(', ')}`);
        for (const h of res.heads) {
          if (h.action === 'raised') console.log(`meter ${h.meter}: continues settlement's chain at seq ${h.ledgerSeq + 1}`);
          if (h.unsent.envelopes > 0) {
            console.error(
              `gtx: warning: the outbox still holds ${h.unsent.envelopes} unsent envelope(s) of meter ${h.meter} (seq ${h.unsent.fromSeq}..${h.unsent.toSeq}) ` +
                `sealed before this enrollment; settlement will refuse those it already has (see gtx gateway status)`,
            );
          }
        }
        console.log(`MQTT login and broker ${res.brokerUrl} saved in ${cfg.dataDir} (mode 0600); start it with: gtx gateway run --config ${f.config}`);
        if (cfg.mqtt.url && cfg.mqtt.url !== res.brokerUrl) {
          console.error(`gtx: warning: ${f.config} sets [mqtt] url = "${cfg.mqtt.url}", so the gateway uses that, not ${res.brokerUrl}; remove it to use settlement's`);
        }
      } catch (e) {
        if (e instanceof EnrollError) {
          console.error(`gtx: ${e.message}`);
          process.exitCode = 1;
          return;
        }
        throw e;
      }
      return;
    }
    case 'run': {
      const f = parseFlags(rest, { config: { type: 'string' } }, USAGE);
      const cfg = loadGatewayConfig(required(f.config, '--config', USAGE));
      if (cfg.meters.length === 0) throw new UsageError(`${f.config} has no [[meters]]`, USAGE);
      const gw = await startGateway(cfg);
      console.log(`gateway ${gw.id} running with ${cfg.meters.length} meter(s), broker ${gw.brokerUrl} (Ctrl-C stops)`);
      await new Promise<void>((r) => {
        process.once('SIGINT', r);
        process.once('SIGTERM', r);
      });
      await gw.stop({ drainMs: 5_000 });
      return;
    }
    case 'status': {
      const f = parseFlags(rest, { config: { type: 'string' } }, USAGE);
      const config = required(f.config, '--config', USAGE);
      const cfg = loadGatewayConfig(config);
      if (!existsSync(cfg.outboxFile)) {
        console.log(`gateway ${cfg.id}: no outbox yet at ${cfg.outboxFile} (never run)`);
        return;
      }
      const outbox = new Outbox(cfg.outboxFile);
      try {
        printStatus(cfg.id, config, brokerSettings(cfg), cfg.mqtt.ackTimeoutMs, outbox);
      } finally {
        outbox.close();
      }
      return;
    }
    case 'requeue': {
      const f = parseFlags(rest, { config: { type: 'string' }, reason: { type: 'string' } }, USAGE);
      const config = required(f.config, '--config', USAGE);
      const reason = f.reason;
      if (reason !== undefined && !(REJECT_REASONS as readonly string[]).includes(reason)) {
        throw new UsageError(`--reason "${reason}" is not a refusal reason (one of ${REJECT_REASONS.join(', ')})`, USAGE);
      }
      const cfg = loadGatewayConfig(config);
      if (!existsSync(cfg.outboxFile)) throw new UsageError(`no outbox at ${cfg.outboxFile}: this gateway has never run`, USAGE);
      const outbox = new Outbox(cfg.outboxFile);
      try {
        const moved = outbox.requeue(reason);
        console.log(`requeued ${moved} dead letter(s)${reason ? ` refused for ${reason}` : ''}; ${outbox.depth()} envelope(s) now in the outbox`);
      } finally {
        outbox.close();
      }
      return;
    }
    default:
      throw new UsageError(`unknown gateway command "${sub}"`, USAGE);
  }
}

function ago(ms: number, nowMs: number): string {
  const s = Math.round((nowMs - ms) / 1000);
  return s >= 0 ? `${s} s ago` : `in ${-s} s`;
}

function printStatus(id: string, config: string, broker: ReturnType<typeof brokerSettings>, ackTimeoutMs: number, outbox: Outbox): void {
  const now = Date.now();
  const out = (line: string) => console.log(line);
  out(`gateway ${id}`);
  out(`  broker: ${broker.url} (${broker.source === 'config' ? '[mqtt] url in the config' : broker.source === 'enrollment' ? 'from enrollment' : 'default; not enrolled yet'})`);

  const clock = outbox.getState<ClockState>('clock');
  if (!clock || clock.ok) {
    out(`  clock: ok${clock?.dropped ? ` (${clock.dropped} reading(s) dropped since the gateway started)` : ''}`);
  } else {
    const why =
      clock.problem === 'before_release_floor'
        ? `before the release floor ${iso(RELEASE_FLOOR_MS)}`
        : `behind the newest reading already sealed (${clock.newestReadingMs === null ? '?' : iso(clock.newestReadingMs)})`;
    out(`  clock: IMPLAUSIBLE, not sealing readings: the gateway's clock read ${iso(clock.clockMs)}, ${why}; ${clock.held} reading(s) held, ${clock.dropped} dropped (check NTP)`);
  }

  const depth = outbox.depth();
  out(`  outbox: ${depth} envelope(s) waiting for settlement`);
  const lastAck = outbox.getState<number>('last_ack_ms');
  out(`  last ack from settlement: ${lastAck === undefined ? 'never' : `${iso(lastAck)} (${ago(lastAck, now)})`}`);
  const wait = outbox.getState<AckWait>('ack_wait');
  if (wait) {
    out(
      `  NO ACK: since ${iso(wait.sinceMs)} envelopes published to ${wait.broker} go unacknowledged past the ack timeout (${ackTimeoutMs / 1000} s; ` +
        `oldest waited ${Math.round(wait.oldestUnackedAgeMs / 1000)} s): is this the settlement's broker? ` +
        `Check [mqtt] url in ${config}, or remove it to use the broker settlement named at enrollment`,
    );
  }

  const retries = outbox.retries();
  const retrying = retries.reduce((a, r) => a + r.envelopes, 0);
  out(`  waiting to be retried: ${retrying} envelope(s)`);
  for (const r of retries) {
    const next = r.nextAttemptMs <= now ? 'due now' : `${iso(r.nextAttemptMs)} (${ago(r.nextAttemptMs, now)})`;
    out(`    ${r.reason}: ${r.envelopes} envelope(s), refused up to ${r.maxAttempts} time(s), next attempt ${next}; last detail: ${r.lastDetail}`);
  }

  const deadCount = outbox.deadLetters();
  out(`  dead letters (refused for good): ${deadCount}${deadCount > 0 ? `; once the cause is fixed: gtx gateway requeue --config ${config} [--reason R]` : ''}`);
  const shown = outbox.listDeadLetters(200);
  for (const d of shown) {
    const meters = d.meters.map((m) => `${m.meter} seq ${m.fromSeq === m.toSeq ? m.fromSeq : `${m.fromSeq}..${m.toSeq}`}`).join(', ');
    out(`    ${d.id.slice(0, 12)}  ${d.readings} reading(s)  ${meters}  ${d.reason}  ${iso(d.atMs)}  ${d.detail}`);
  }
  if (deadCount > shown.length) out(`    … and ${deadCount - shown.length} more`);

  for (const h of outbox.meterHeads()) out(`  meter ${h.meter}: last seq ${h.seq}${h.tsMs === null ? '' : ` at ${iso(h.tsMs)}`}`);
}

function configTemplate(id: string, dataDir: string): string {
  return `[gateway]
id = "${id}"
data_dir = "${dataDir}"
poll_interval_s = 5
batch_max_readings = 16
batch_max_age_s = 10

[mqtt]
# url = "mqtt://broker.example:1883"   # leave unset: enrollment saves the broker settlement names
ack_timeout_s = 15
max_in_flight = 32

# One table per meter.
# [[meters]]
# id = "${id}-main"
# model = "sdm120"          # see: gtx simulate --list
# transport = "tcp"
# host = "192.168.1.50"
# port = 502
# unit_id = 1
# role = "consumption"      # consumption | generation | bidirectional
`;
}

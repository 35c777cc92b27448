import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { RELEASE_FLOOR_MS, iso, type ClockState } from '../../gateway/clock.ts';
import { gatewayDefaults, loadGatewayConfig } from '../../gateway/config.ts';
import { idFromKey, loadOrCreateKey } from '../../gateway/keys.ts';
import { brokerSettings, enroll } from '../../gateway/enroll.ts';
import type { MeterState } from '../../gateway/bus.ts';
import { OUTBOX_NEAR, startGateway, type OutboxFill } from '../../gateway/main.ts';
import { describeReading } from '../../gateway/meter-check.ts';
import { Outbox } from '../../gateway/outbox.ts';
import type { AckWait } from '../../gateway/publisher.ts';
import { REJECT_REASONS, gatewayId, type GatewayId } from '../../protocol/index.ts';
import { CliError, command, parseFlags, required, runSubcommand, UsageError } from '../args.ts';
import { untilStopSignal } from '../stop-signal.ts';
import { scan, SCAN } from './gateway-scan.ts';
import { testGateway, TEST } from './gateway-test.ts';

const INIT = command(
  'gateway init',
  `gtx gateway init [--id ID] [--config FILE] [--data-dir DIR] [--reuse-key]
      create the gateway key (mode 0600) and ./gateway.toml, the config every other gateway
      command reads from this folder

  --id ID          the gateway's id: letters, digits, '.', '_' or '-' (part of its MQTT topics);
                   default gw- and the start of its public key's fingerprint
  --config FILE    where to write the config (default ./gateway.toml; --write-config too)
  --data-dir DIR   key, outbox and MQTT login (default gateway-data next to the config)
  --reuse-key      keep a key that already exists in DIR (without it, init refuses: the id is in use)`,
  { id: { type: 'string' }, config: { type: 'string' }, 'write-config': { type: 'string' }, 'data-dir': { type: 'string' }, 'reuse-key': { type: 'boolean' } },
);
/** Every gateway command but init reads this config unless --config names another. */
const DEFAULT_CONFIG = './gateway.toml';
const ENROLL = command(
  'gateway enroll',
  `gtx gateway enroll --url SETTLEMENT_HTTP_URL --code CODE [--config FILE]
      register this gateway and its meters with the installer's one-time code; saves the MQTT
      login and broker URL, and continues each meter's chain where settlement has it

  --config FILE   the gateway's TOML (default ./gateway.toml, which gtx gateway init makes)
  --url URL       the settlement's HTTP address ([http] listen there), e.g. http://127.0.0.1:8080
  --code CODE     the one-time installer code (gtx settlement enroll-code)`,
  { config: { type: 'string' }, url: { type: 'string' }, code: { type: 'string' } },
);
const RUN = command(
  'gateway run',
  `gtx gateway run [--config FILE]
      poll the configured meters and publish signed readings until Ctrl-C (SIGINT) or SIGTERM,
      then stop cleanly (exit 0), waiting up to 5 s for outstanding acknowledgements`,
  { config: { type: 'string' } },
);
const STATUS = command(
  'gateway status',
  `gtx gateway status [--config FILE]
      broker, clock, outbox depth, last ack, envelopes waiting to be retried, dead letters,
      and each meter's last seq`,
  { config: { type: 'string' } },
);
const REQUEUE = command(
  'gateway requeue',
  `gtx gateway requeue [--config FILE] [--reason REASON]
      move dead letters (all, or those refused for REASON) back into the outbox, in their
      original order; works while the gateway runs`,
  { config: { type: 'string' }, reason: { type: 'string' } },
);
const GATEWAY = {
  name: 'gateway',
  usage: [INIT, SCAN, ENROLL, TEST, RUN, STATUS, REQUEUE].map((c) => c.usage.split('\n\n')[0]!).join('\n') + '\n\n  gtx gateway COMMAND --help shows a command\'s options.',
};

export async function run(argv: string[]): Promise<void> {
  return runSubcommand(GATEWAY, argv, { init, scan: (a) => scan(a, configPath), enroll: enrollCommand, test: (a) => testGateway(a, configPath), run: runGateway, status, requeue });
}

/** The config a gateway command reads: --config, or ./gateway.toml, which must exist. */
function configPath(flag: string | undefined): string {
  const path = flag ?? DEFAULT_CONFIG;
  if (!existsSync(path)) {
    throw new CliError(flag ? `${path}: no such file` : `no gateway.toml in this folder: run gtx gateway init here, or pass --config FILE`);
  }
  return path;
}

async function init(argv: string[]): Promise<void> {
  const f = parseFlags(argv, INIT);
  let id: GatewayId | undefined;
  try {
    id = f.id === undefined ? undefined : gatewayId(f.id);
  } catch (e) {
    throw new UsageError(`--id: ${(e as Error).message}`, INIT.name);
  }
  const out = resolve(f.config ?? f['write-config'] ?? DEFAULT_CONFIG);
  const dataDir = resolve(f['data-dir'] ?? join(dirname(out), 'gateway-data'));
  const keyFile = gatewayDefaults('gw', dataDir).keyFile;
  // Refuse before creating anything, so a failed init leaves nothing behind.
  if (existsSync(out)) throw new CliError(`${f.config ?? f['write-config'] ?? DEFAULT_CONFIG} exists; not overwriting it: choose another --config FILE, or remove it`);
  const existed = existsSync(keyFile);
  if (existed && !f['reuse-key']) {
    // Two gateways with one key and id would be one gateway to settlement (and the second enrollment is refused).
    throw new CliError(
      `gateway key already exists at ${keyFile}; this id is in use on this machine: choose another --id or --data-dir, or pass --reuse-key to keep it`,
    );
  }
  const key = loadOrCreateKey(keyFile);
  id ??= idFromKey(key.publicKeyPem);
  const pubFile = join(dataDir, 'gateway.pub.pem');
  writeFileSync(pubFile, key.publicKeyPem);
  console.log(`${existed ? 'kept existing' : 'created'} key ${keyFile} (mode 0600)`);
  console.log(`public key ${pubFile}`);
  mkdirSync(dirname(out), { recursive: true });
  // data_dir relative to the config file, as the loader reads it: the pair can be moved together.
  const rel = relative(dirname(out), dataDir) || '.';
  writeFileSync(out, configTemplate(id, rel));
  const flag = f.config ?? f['write-config'] ? ` --config ${f.config ?? f['write-config']}` : '';
  console.log(`wrote ${relative(process.cwd(), out) || out} for gateway ${id}`);
  console.log(`next: find the meters: gtx gateway scan --serial /dev/ttyUSB0 (or --tcp HOST)${flag}, or add [[meters]] by hand`);
  console.log(`then: gtx gateway enroll --url URL --code CODE${flag}; gtx gateway test${flag}; gtx gateway run${flag}`);
}

async function enrollCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, ENROLL);
  const url = required(f.url, '--url', ENROLL);
  const code = required(f.code, '--code', ENROLL);
  if (!/^https?:\/\//i.test(url)) throw new UsageError('--url must start with http:// or https://, e.g. http://127.0.0.1:8080', ENROLL.name);
  if (!URL.canParse(url)) throw new UsageError(`--url "${url}" is not a URL, e.g. http://127.0.0.1:8080`, ENROLL.name);
  const config = configPath(f.config);
  const cfg = loadGatewayConfig(config);
  if (cfg.meters.length === 0) throw new CliError(`${config} has no [[meters]] to enroll: add one per meter (see config/gateway.toml)`);
  // EnrollError (unreachable settlement, refusal) is one line and exit code 2 (bin/args.ts).
  const res = await enroll(cfg, url, code);
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
  console.log(`MQTT login and broker ${res.brokerUrl} saved in ${cfg.dataDir} (mode 0600); start it with: gtx gateway run --config ${config}`);
  if (cfg.mqtt.url && cfg.mqtt.url !== res.brokerUrl) {
    console.error(`gtx: warning: ${config} sets [mqtt] url = "${cfg.mqtt.url}", so the gateway uses that, not ${res.brokerUrl}; remove it to use settlement's`);
  }
}

async function runGateway(argv: string[]): Promise<void> {
  const f = parseFlags(argv, RUN);
  const config = configPath(f.config);
  const cfg = loadGatewayConfig(config);
  if (cfg.meters.length === 0) throw new CliError(`${config} has no [[meters]]: add one per meter (see config/gateway.toml)`);
  const gw = await startGateway(cfg);
  console.log(`gateway ${gw.id} running with ${cfg.meters.length} meter(s) on ${cfg.buses.length} bus(es), broker ${gw.brokerUrl}${gw.statusUrl ? `, status page ${gw.statusUrl}` : ''} (Ctrl-C or SIGTERM stops it)`);
  await untilStopSignal();
  await gw.stop({ drainMs: 5_000 });
  console.log('gateway stopped');
}

async function status(argv: string[]): Promise<void> {
  const f = parseFlags(argv, STATUS);
  const config = configPath(f.config);
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
}

async function requeue(argv: string[]): Promise<void> {
  const f = parseFlags(argv, REQUEUE);
  const reason = f.reason;
  if (reason !== undefined && !(REJECT_REASONS as readonly string[]).includes(reason)) {
    throw new UsageError(`--reason "${reason}" is not a refusal reason (one of ${REJECT_REASONS.join(', ')})`, REQUEUE.name);
  }
  const config = configPath(f.config);
  const cfg = loadGatewayConfig(config);
  if (!existsSync(cfg.outboxFile)) throw new CliError(`no outbox at ${cfg.outboxFile}: this gateway has never run`);
  const outbox = new Outbox(cfg.outboxFile);
  try {
    const moved = outbox.requeue(reason);
    console.log(`requeued ${moved} dead letter(s)${reason ? ` refused for ${reason}` : ''}; ${outbox.depth()} envelope(s) now in the outbox`);
  } finally {
    outbox.close();
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
  const fill = outbox.getState<OutboxFill>('outbox_fill');
  const mib = (b: number) => (b / 1048576).toFixed(1);
  const size = `${mib(outbox.sizeBytes())} MiB${fill ? ` of ${mib(fill.capBytes)} MiB` : ''}`;
  out(`  outbox: ${depth} envelope(s) waiting for settlement, ${size}`);
  if (fill && fill.state !== 'ok') {
    out(`  OUTBOX ${fill.state === 'full' ? 'FULL: new readings are not stored' : `above ${OUTBOX_NEAR * 100} % of its cap`} ([gateway] outbox_max_mib); ${fill.notStored} reading(s) not stored: is settlement reachable?`);
  }
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

  const polled = outbox.getState<{ atMs: number; meters: MeterState[] }>('meters');
  const byId = new Map((polled?.meters ?? []).map((m) => [m.id, m]));
  if (polled) out(`  meters as the running gateway saw them ${ago(polled.atMs, now)}:`);
  for (const h of outbox.meterHeads()) {
    const m = byId.get(h.meter);
    const live = m ? ` · ${m.bus} #${m.unitId} ${m.state}${m.lastValues ? ` (${describeReading(m.lastValues)})` : ''}${m.lastError ? `: ${m.lastError}` : ''}` : '';
    out(`  meter ${h.meter}: last seq ${h.seq}${h.tsMs === null ? '' : ` at ${iso(h.tsMs)}`}${live}`);
  }
}

function configTemplate(id: string, dataDir: string): string {
  return `[gateway]
id = "${id}"
data_dir = ${JSON.stringify(dataDir)}   # key, outbox and MQTT login; relative to this file
poll_interval_s = 5
batch_max_readings = 64
batch_max_age_s = 10

[mqtt]
# url = "mqtt://broker.example:1883"   # leave unset: enrollment saves the broker settlement names
ack_timeout_s = 15
max_in_flight = 32

# Home Assistant: meters and the market price as sensors on HA's broker (docs/gateway.md).
# [home_assistant]
# url = "mqtt://homeassistant.local:1883"
# username = "gridtokenx"
# password_file = "ha-mqtt.secret"     # relative to this file, mode 0600

# Buses: an RS-485 line (Modbus RTU) or a TCP endpoint; gtx gateway scan adds what it finds.
# [[buses]]
# name = "rs485"
# serial = "/dev/ttyUSB0"
# baud = 9600
# parity = "none"
#
# One table per meter.
# [[meters]]
# id = "${id}-main"
# model = "sdm120"          # see: gtx simulate --list
# bus = "rs485"             # or, for a Modbus TCP meter: host = "192.168.1.50" and port = 502
# unit_id = 1
# role = "consumption"      # consumption | generation | bidirectional
`;
}

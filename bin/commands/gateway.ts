import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gatewayDefaults, loadGatewayConfig } from '../../gateway/config.ts';
import { loadOrCreateKey } from '../../gateway/keys.ts';
import { startGateway } from '../../gateway/main.ts';
import { enroll, EnrollError } from '../../gateway/enroll.ts';
import { Outbox } from '../../gateway/outbox.ts';
import { gatewayId } from '../../protocol/index.ts';
import { parseFlags, required, UsageError } from '../args.ts';

const USAGE = `gtx gateway init --id ID [--data-dir DIR] [--write-config FILE]
      create the gateway key (mode 0600) and write its public key next to it
gtx gateway enroll --config FILE --url SETTLEMENT_HTTP_URL --code CODE
      register this gateway and its meters with the installer's one-time code; saves the MQTT login
gtx gateway run --config FILE
      poll the configured meters and publish signed readings
gtx gateway status --config FILE
      outbox depth, rejected envelopes and each meter's last seq`;

export async function run(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
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
        console.log(`MQTT login saved in ${cfg.dataDir} (mode 0600); start it with: gtx gateway run --config ${f.config}`);
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
      console.log(`gateway ${gw.id} running with ${cfg.meters.length} meter(s), broker ${cfg.mqtt.url} (Ctrl-C stops)`);
      await new Promise<void>((r) => {
        process.once('SIGINT', r);
        process.once('SIGTERM', r);
      });
      await gw.stop({ drainMs: 5_000 });
      return;
    }
    case 'status': {
      const f = parseFlags(rest, { config: { type: 'string' } }, USAGE);
      const cfg = loadGatewayConfig(required(f.config, '--config', USAGE));
      if (!existsSync(cfg.outboxFile)) {
        console.log(`gateway ${cfg.id}: no outbox yet at ${cfg.outboxFile} (never run)`);
        return;
      }
      const outbox = new Outbox(cfg.outboxFile);
      console.log(`gateway ${cfg.id}`);
      console.log(`  outbox: ${outbox.depth()} envelope(s) waiting for settlement`);
      console.log(`  rejected by settlement: ${outbox.deadLetters()}`);
      for (const h of outbox.meterHeads()) console.log(`  meter ${h.meter}: last seq ${h.seq}`);
      outbox.close();
      return;
    }
    default:
      throw new UsageError(sub ? `unknown gateway command "${sub}"` : 'gateway needs a command', USAGE);
  }
}

function configTemplate(id: string, dataDir: string): string {
  return `[gateway]
id = "${id}"
data_dir = "${dataDir}"
poll_interval_s = 5
batch_max_readings = 16
batch_max_age_s = 10

[mqtt]
url = "mqtt://127.0.0.1:1883"
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
`;
}

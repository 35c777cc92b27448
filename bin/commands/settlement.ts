import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { writeMosquittoFiles } from '../../settlement/broker/mosquitto.ts';
import { defaultSettlementConfig, loadSettlementConfig, type SettlementConfig } from '../../settlement/config.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { openLedger as openConfiguredLedger } from '../../settlement/ledger/open.ts';
import { Enrollment, EnrollmentError } from '../../settlement/registry/enrollment.ts';
import type { MarketId } from '../../settlement/registry/registry.ts';
import { parseFlags, positiveNumber, required, UsageError } from '../args.ts';

const USAGE = `gtx settlement run [--config FILE]
gtx settlement enroll-code --owner ACCOUNT [--market ID] [--ttl-hours N] [--config FILE]
      print a one-time installer code (the default market is the first configured)
gtx settlement revoke-gateway --id ID [--config FILE]
gtx settlement mosquitto-acl --out DIR [--port 1883] [--host ADDR] [--user OS_USER]
      Mosquitto config, ACL and password file for an external broker (docs/mqtt-security.md)

  --config FILE   settlement TOML (default: config/settlement.toml if present, else built-in defaults with ./data)`;

/** The config named by --config, else config/settlement.toml, else the defaults. */
export function settlementConfigFrom(path: string | undefined): SettlementConfig {
  if (path) return loadSettlementConfig(path);
  if (existsSync('config/settlement.toml')) return loadSettlementConfig('config/settlement.toml');
  return defaultSettlementConfig();
}

/** Opens the configured ledger (PostgreSQL when DATABASE_URL is set), migrated, for one-shot commands. */
export async function openLedger(cfg: SettlementConfig): Promise<Ledger> {
  return openConfiguredLedger(cfg.ledger);
}

export async function run(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'run': {
      const f = parseFlags(rest, { config: { type: 'string' } }, USAGE);
      const cfg = settlementConfigFrom(f.config);
      // Loaded here so the one-shot commands don't pay for the broker and HTTP stack.
      const { startSettlement } = await import('../../settlement/main.ts');
      const s = await startSettlement(cfg);
      console.log(`settlement running: broker ${s.brokerUrl}, ledger ${cfg.ledger.sqlitePath} (Ctrl-C stops)`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await s.stop();
      return;
    }
    case 'enroll-code': {
      const f = parseFlags(
        rest,
        { config: { type: 'string' }, market: { type: 'string' }, owner: { type: 'string' }, 'ttl-hours': { type: 'string' } },
        USAGE,
      );
      const cfg = settlementConfigFrom(f.config);
      const market = f.market ?? cfg.markets[0]?.id ?? '';
      const owner = required(f.owner, '--owner', USAGE);
      const ttlMs = f['ttl-hours'] ? positiveNumber(f['ttl-hours'], '--ttl-hours', USAGE, 0) * 3600_000 : cfg.enrollmentCodeTtlMs;
      const ledger = await openLedger(cfg);
      try {
        for (const m of cfg.markets) await ledger.putMarket({ ...m, id: m.id as MarketId });
        const { code, expiresAtMs } = await new Enrollment(ledger, { now: Date.now, mqttUrl: () => '' }).issueCode({ market, owner, ttlMs });
        console.log(code);
        console.error(`one-time installer code for ${owner} in ${market}, valid until ${new Date(expiresAtMs).toISOString()}`);
        console.error(`on the gateway: gtx gateway enroll --config gateway.toml --url <settlement http url> --code ${code}`);
      } catch (e) {
        if (e instanceof EnrollmentError) throw new UsageError(e.message, USAGE);
        throw e;
      } finally {
        await ledger.close();
      }
      return;
    }
    case 'mosquitto-acl': {
      const f = parseFlags(rest, { out: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, user: { type: 'string' } }, USAGE);
      const out = resolve(required(f.out, '--out', USAGE));
      const port = positiveNumber(f.port, '--port', USAGE, 1883);
      const files = writeMosquittoFiles({ dir: out, port, host: f.host, user: f.user });
      console.log(`wrote ${files.conf}, ${files.acl} and ${files.passwd} (settlement user only)`);
      console.log(`the settlement's MQTT password is in ${files.secret} (mode 0600); in settlement.toml:`);
      console.log(`  [mqtt]\n  url = "mqtt://${f.host ?? '127.0.0.1'}:${port}"\n  username = "gtx-settlement"   # password: GTX_MQTT_PASSWORD=$(cat ${files.secret})`);
      console.log(`  mosquitto_password_file = "${files.passwd}"   # gateways are added at enrollment, removed at revocation`);
      console.log(`  mosquitto_pid_file = "/run/mosquitto/mosquitto.pid"   # so Mosquitto re-reads it (SIGHUP)`);
      console.log(`then: mosquitto -c ${files.conf}`);
      return;
    }
    case 'revoke-gateway': {
      const f = parseFlags(rest, { config: { type: 'string' }, id: { type: 'string' } }, USAGE);
      const id = required(f.id, '--id', USAGE);
      const ledger = await openLedger(settlementConfigFrom(f.config));
      try {
        if (!(await ledger.setGatewayStatus(id, 'revoked', Date.now()))) throw new UsageError(`gateway ${id} is not registered`, USAGE);
      } finally {
        await ledger.close();
      }
      console.log(`gateway ${id} revoked: its readings and MQTT logins are refused from now on (running settlements notice within 2 s)`);
      return;
    }
    default:
      throw new UsageError(sub ? `unknown settlement command "${sub}"` : 'settlement needs a command', USAGE);
  }
}

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { writeMosquittoFiles } from '../../settlement/broker/mosquitto.ts';
import { defaultSettlementConfig, loadSettlementConfig, type SettlementConfig } from '../../settlement/config.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { openLedger as openConfiguredLedger } from '../../settlement/ledger/open.ts';
import { Enrollment, EnrollmentError } from '../../settlement/registry/enrollment.ts';
import type { MarketId } from '../../settlement/registry/registry.ts';
import { API_ROLES, ApiKeyStore, isApiRole } from '../../settlement/registry/api-keys.ts';
import { parseFlags, positiveNumber, required, UsageError } from '../args.ts';

const USAGE = `gtx settlement run [--config FILE]
gtx settlement enroll-code --owner ACCOUNT [--market ID] [--ttl-hours N] [--config FILE]
      print a one-time installer code (the default market is the first configured)
gtx settlement revoke-gateway --id ID [--config FILE]
gtx settlement api-key create --role ${API_ROLES.join('|')} [--label TEXT] [--config FILE]
      print a new REST API key once on stdout (the ledger keeps only its SHA-256)
gtx settlement api-key list [--config FILE]
gtx settlement api-key revoke --id ID [--config FILE]
gtx settlement mosquitto-acl --out DIR [--port 1883] [--host ADDR] [--user OS_USER] [--workers N]
      Mosquitto config, ACL and password file for an external broker (docs/mqtt-security.md);
      --workers N > 1: one MQTT user per settlement worker (gtx-settlement-1 … gtx-settlement-N)

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
      const f = parseFlags(
        rest,
        { out: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, user: { type: 'string' }, workers: { type: 'string' } },
        USAGE,
      );
      const out = resolve(required(f.out, '--out', USAGE));
      const port = positiveNumber(f.port, '--port', USAGE, 1883);
      const workers = positiveNumber(f.workers, '--workers', USAGE, 1);
      if (!Number.isInteger(workers) || workers > 999) throw new UsageError(`--workers must be a whole number from 1 to 999, got "${f.workers}"`, USAGE);
      const files = writeMosquittoFiles({ dir: out, port, host: f.host, user: f.user, workers });
      const users = files.workers.map((w) => w.username).join(', ');
      console.log(`wrote ${files.conf}, ${files.acl} and ${files.passwd} (settlement ${workers === 1 ? 'user' : 'users'} ${users} only)`);
      // Mosquitto replaces client ids by usernames (use_username_as_clientid): one connection per user.
      for (const [i, w] of files.workers.entries()) {
        const who = workers === 1 ? 'the settlement' : `worker ${i + 1}`;
        console.log(`${who}: MQTT password in ${w.secretFile} (mode 0600); in its settlement.toml:`);
        console.log(`  [mqtt]\n  url = "mqtt://${f.host ?? '127.0.0.1'}:${port}"\n  username = "${w.username}"   # password: GTX_MQTT_PASSWORD=$(cat ${w.secretFile})`);
        if (workers > 1) console.log(`  shared_group = "gtx-ingest"   # the workers share the readings`);
        if (i === 0) {
          const only = workers > 1 ? ' (on the one worker that serves enrollment and revocation)' : '';
          console.log(`  mosquitto_password_file = "${files.passwd}"   # gateways are added at enrollment, removed at revocation${only}`);
          console.log(`  mosquitto_pid_file = "/run/mosquitto/mosquitto.pid"   # so Mosquitto re-reads it (SIGHUP)`);
        }
      }
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
    case 'api-key':
      return apiKeyCommand(rest);
    default:
      throw new UsageError(sub ? `unknown settlement command "${sub}"` : 'settlement needs a command', USAGE);
  }
}

/** `gtx settlement api-key create|list|revoke`: REST API keys in the ledger (docs/settlement.md, "API keys"). */
async function apiKeyCommand(argv: string[]): Promise<void> {
  const [action, ...rest] = argv;
  switch (action) {
    case 'create': {
      const f = parseFlags(rest, { config: { type: 'string' }, role: { type: 'string' }, label: { type: 'string' } }, USAGE);
      const role = required(f.role, '--role', USAGE);
      if (!isApiRole(role)) throw new UsageError(`--role must be one of ${API_ROLES.join(', ')}, got "${role}"`, USAGE);
      const label = f.label ?? '';
      if (label.length > 200) throw new UsageError('--label must be at most 200 characters', USAGE);
      const ledger = await openLedger(settlementConfigFrom(f.config));
      try {
        const { key, record } = await new ApiKeyStore(ledger.db).create(role, label);
        // The key alone on stdout, so `KEY=$(gtx settlement api-key create …)` works; the rest is for the person.
        console.log(key);
        console.error(`API key ${record.id} (role ${role}${label ? `, "${label}"` : ''}) created; it is shown only this once.`);
        console.error(`send it as "Authorization: Bearer <key>"; revoke it with: gtx settlement api-key revoke --id ${record.id}`);
      } finally {
        await ledger.close();
      }
      return;
    }
    case 'list': {
      const f = parseFlags(rest, { config: { type: 'string' } }, USAGE);
      const ledger = await openLedger(settlementConfigFrom(f.config));
      try {
        const keys = await new ApiKeyStore(ledger.db).list();
        if (keys.length === 0) {
          console.error('no API keys (gtx settlement api-key create --role …)');
          return;
        }
        const roleWidth = Math.max(4, ...keys.map((k) => k.role.length));
        console.log(`${'ID'.padEnd(10)}  ${'ROLE'.padEnd(roleWidth)}  ${'CREATED'.padEnd(24)}  ${'REVOKED'.padEnd(24)}  LABEL`);
        for (const k of keys) {
          const revoked = k.revokedAtMs === null ? '-' : new Date(k.revokedAtMs).toISOString();
          console.log(`${k.id.padEnd(10)}  ${k.role.padEnd(roleWidth)}  ${new Date(k.createdAtMs).toISOString()}  ${revoked.padEnd(24)}  ${k.label}`);
        }
      } finally {
        await ledger.close();
      }
      return;
    }
    case 'revoke': {
      const f = parseFlags(rest, { config: { type: 'string' }, id: { type: 'string' } }, USAGE);
      const id = required(f.id, '--id', USAGE);
      const ledger = await openLedger(settlementConfigFrom(f.config));
      let outcome: Awaited<ReturnType<ApiKeyStore['revoke']>>;
      try {
        outcome = await new ApiKeyStore(ledger.db).revoke(id);
      } finally {
        await ledger.close();
      }
      if (outcome === 'unknown') throw new UsageError(`no API key with id ${id} (gtx settlement api-key list shows them)`, USAGE);
      console.log(outcome === 'revoked' ? `API key ${id} revoked: the API refuses it from now on` : `API key ${id} was already revoked`);
      return;
    }
    default:
      throw new UsageError(action ? `unknown api-key command "${action}"` : 'api-key needs create, list or revoke', USAGE);
  }
}

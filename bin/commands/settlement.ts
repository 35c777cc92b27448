import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeMosquittoFiles } from '../../settlement/broker/mosquitto.ts';
import { defaultSettlementConfig, loadSettlementConfig, type SettlementConfig } from '../../settlement/config.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { openLedger as openConfiguredLedger } from '../../settlement/ledger/open.ts';
import { Enrollment, EnrollmentError } from '../../settlement/registry/enrollment.ts';
import type { MarketId } from '../../settlement/registry/registry.ts';
import { API_ROLES, ApiKeyStore, isApiRole, MAX_INSTALLER_CUSTOMERS } from '../../settlement/registry/api-keys.ts';
import { ACCOUNT_ID } from '../../settlement/registry/enrollment.ts';
import { CliError, command, listenAddress, parseFlags, portNumber, positiveNumber, required, runSubcommand, UsageError, type Command } from '../args.ts';
import { untilStopSignal } from '../stop-signal.ts';

const CONFIG = '  --config FILE             settlement TOML (default: config/settlement.toml if present, else built-in defaults with ./data)';
const DATA = '  --data DIR                ledger and state under DIR (wins over [settlement] data_dir and [ledger] sqlite_path;\n                            DATABASE_URL still names a PostgreSQL ledger)';
const configOptions = { config: { type: 'string' }, data: { type: 'string' } } as const;

const RUN = command(
  'settlement run',
  `gtx settlement run [--config FILE] [--data DIR] [--mqtt-listen HOST:PORT] [--http-listen HOST:PORT]
      the settlement service: MQTT broker (embedded, or external by [mqtt] url), ledger, REST API;
      Ctrl-C (SIGINT) or SIGTERM stops it cleanly (exit 0)

${CONFIG}
${DATA}
  --mqtt-listen HOST:PORT   the embedded broker's address (wins over [mqtt] listen; port 0 takes a free one)
  --http-listen HOST:PORT   the REST API's address (wins over [http] listen; port 0 takes a free one)`,
  { ...configOptions, 'mqtt-listen': { type: 'string' }, 'http-listen': { type: 'string' } },
);
const ENROLL_CODE = command(
  'settlement enroll-code',
  `gtx settlement enroll-code --owner ACCOUNT [--market ID] [--ttl-hours N] [--config FILE] [--data DIR]
      print a one-time installer code on stdout (the default market is the first configured)

${CONFIG}
${DATA}`,
  { ...configOptions, market: { type: 'string' }, owner: { type: 'string' }, 'ttl-hours': { type: 'string' } },
);
const REVOKE = command(
  'settlement revoke-gateway',
  `gtx settlement revoke-gateway --id ID [--config FILE] [--data DIR]
      refuse a gateway's readings and MQTT logins from now on

${CONFIG}
${DATA}`,
  { ...configOptions, id: { type: 'string' } },
);
const ACL = command(
  'settlement mosquitto-acl',
  `gtx settlement mosquitto-acl --out DIR [--port 1883] [--host ADDR] [--user OS_USER] [--workers N]
      Mosquitto config, ACL and password file for an external broker (docs/mqtt-security.md);
      --workers N > 1: one MQTT user per settlement worker (gtx-settlement-1 … gtx-settlement-N)`,
  { out: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, user: { type: 'string' }, workers: { type: 'string' } },
);
const KEY_CREATE = command(
  'settlement api-key create',
  `gtx settlement api-key create --role ${API_ROLES.join('|')} [--account ID] [--customers ID,ID…] [--label TEXT] [--config FILE] [--data DIR]
      print a new REST API key once on stdout (the ledger keeps only its SHA-256);
      a prosumer key needs --account, the registry account it acts for (its meters, orders, balances, trades);
      an installer key needs --customers, the accounts it serves (1 to ${MAX_INSTALLER_CUSTOMERS}, comma-separated): it issues
      enrollment codes for them and sees their gateways, meters, readings and rejections

  --role ROLE               admin (everything), utility (reads and audits every meter and market),
                            installer (its customers' codes and gateways), prosumer (its own account)
  --account ID              prosumer keys: the registry account (it must exist: an enrollment code creates it)
  --customers ID,ID…        installer keys: the customer accounts (they may not exist yet)
  --label TEXT              a note shown in the key list (at most 200 characters)
${CONFIG}
${DATA}`,
  { ...configOptions, role: { type: 'string' }, label: { type: 'string' }, account: { type: 'string' }, customers: { type: 'string' } },
);
const KEY_LIST = command(
  'settlement api-key list',
  `gtx settlement api-key list [--config FILE] [--data DIR]
      API keys by id, role, creation and revocation time, and label (then a prosumer key's
      account or an installer key's customers)

${CONFIG}
${DATA}`,
  configOptions,
);
const KEY_REVOKE = command(
  'settlement api-key revoke',
  `gtx settlement api-key revoke --id ID [--config FILE] [--data DIR]
      the API refuses the key from the next request on

${CONFIG}
${DATA}`,
  { ...configOptions, id: { type: 'string' } },
);

const synopsis = (c: Command) => c.usage.split('\n\n')[0]!;
const API_KEY = {
  name: 'settlement api-key',
  usage: [KEY_CREATE, KEY_LIST, KEY_REVOKE].map(synopsis).join('\n') + `\n\n${CONFIG}\n${DATA}`,
};
const SETTLEMENT = {
  name: 'settlement',
  usage: [RUN, ENROLL_CODE, REVOKE, KEY_CREATE, KEY_LIST, KEY_REVOKE, ACL].map(synopsis).join('\n') + `\n\n${CONFIG}\n${DATA}\n\n  gtx settlement COMMAND --help shows a command's options.`,
};

/** The config named by --config, else config/settlement.toml, else the defaults. */
export function settlementConfigFrom(path: string | undefined): SettlementConfig {
  if (path) return loadSettlementConfig(path);
  if (existsSync(DEFAULT_CONFIG)) return loadSettlementConfig(DEFAULT_CONFIG);
  return defaultSettlementConfig();
}

const DEFAULT_CONFIG = 'config/settlement.toml';

/** The config file settlementConfigFrom reads, if any (for messages that name a key in it). */
function configFileOf(path: string | undefined): string | undefined {
  return path ?? (existsSync(DEFAULT_CONFIG) ? DEFAULT_CONFIG : undefined);
}

/** The configuration with --data applied: flags win over the file. */
function configWithFlags(f: { config?: string; data?: string }): SettlementConfig {
  const cfg = settlementConfigFrom(f.config);
  if (f.data !== undefined) {
    cfg.dataDir = resolve(f.data);
    cfg.ledger.sqlitePath = join(cfg.dataDir, 'ledger.sqlite');
  }
  return cfg;
}

/** Opens the configured ledger (PostgreSQL when DATABASE_URL is set), migrated, for one-shot commands. */
export async function openLedger(cfg: SettlementConfig): Promise<Ledger> {
  return openConfiguredLedger(cfg.ledger);
}

/**
 * The configured ledger, if there is one: opening a SQLite path creates the file, and a command
 * that reads or changes an existing ledger (audit, market) run on a mistyped path must say so
 * rather than work on an empty ledger it made itself. A PostgreSQL ledger is whatever
 * DATABASE_URL names.
 */
export async function openExistingLedger(cfg: SettlementConfig, command: string): Promise<Ledger> {
  if (!cfg.ledger.databaseUrl && !existsSync(cfg.ledger.sqlitePath)) {
    throw new UsageError(`no ledger at ${cfg.ledger.sqlitePath}: check --config / [ledger] sqlite_path, or DATABASE_URL`, command);
  }
  return openLedger(cfg);
}

export async function run(argv: string[]): Promise<void> {
  return runSubcommand(SETTLEMENT, argv, {
    run: runService,
    'enroll-code': enrollCode,
    'revoke-gateway': revokeGateway,
    'api-key': (rest) =>
      runSubcommand(API_KEY, rest, { create: createApiKey, list: listApiKeys, revoke: revokeApiKey }),
    'mosquitto-acl': mosquittoAcl,
  });
}

async function runService(argv: string[]): Promise<void> {
  const f = parseFlags(argv, RUN);
  const cfg = configWithFlags(f);
  if (f['mqtt-listen'] !== undefined) {
    const { host, port } = listenAddress(f['mqtt-listen'], '--mqtt-listen', RUN);
    // The flag means the embedded broker, whatever the file says.
    const embedded = cfg.mqtt.mode === 'embedded' ? cfg.mqtt : undefined;
    cfg.mqtt = { mode: 'embedded', listenHost: host, listenPort: port, clientId: cfg.mqtt.clientId, auth: embedded?.auth ?? true, tls: embedded?.tls };
  }
  if (f['http-listen'] !== undefined) cfg.http = listenAddress(f['http-listen'], '--http-listen', RUN);
  // Loaded here so the one-shot commands don't pay for the broker and HTTP stack.
  const { startSettlement } = await import('../../settlement/main.ts');
  let s: Awaited<ReturnType<typeof startSettlement>>;
  try {
    s = await startSettlement(cfg);
  } catch (e) {
    const inUse = addressInUse(e, cfg, configFileOf(f.config));
    if (!inUse) throw e;
    // startSettlement closed what it had opened before the failed bind.
    throw new CliError(inUse);
  }
  const ledger = cfg.ledger.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : cfg.ledger.sqlitePath;
  console.log(`settlement running: broker ${s.brokerUrl}, API ${s.httpUrl ?? 'off'}, ledger ${ledger} (Ctrl-C or SIGTERM stops it)`);
  await untilStopSignal();
  await s.stop();
  console.log('settlement stopped');
}

/** EADDRINUSE as one line naming the flag and config key that choose another address. */
function addressInUse(e: unknown, cfg: SettlementConfig, configFile: string | undefined): string | undefined {
  const err = e as { code?: unknown; address?: unknown; port?: unknown } | null;
  if (err?.code !== 'EADDRINUSE') return undefined;
  const addr = `${String(err.address)}:${String(err.port)}`;
  const inFile = configFile ? ` in ${configFile}` : '';
  if (cfg.mqtt.mode === 'embedded' && cfg.mqtt.tls && err.port === cfg.mqtt.tls.port) {
    return `${addr} is already in use: give the broker's TLS listener another address with [mqtt] tls_listen${inFile}`;
  }
  if (cfg.mqtt.mode === 'embedded' && err.port === cfg.mqtt.listenPort) {
    return `${addr} is already in use (another MQTT broker, such as Mosquitto?): give the embedded broker another address with --mqtt-listen HOST:PORT or [mqtt] listen${inFile}, e.g. --mqtt-listen 127.0.0.1:18830`;
  }
  if (cfg.http && err.port === cfg.http.port) {
    return `${addr} is already in use: give the REST API another address with --http-listen HOST:PORT or [http] listen${inFile}, e.g. --http-listen 127.0.0.1:18080`;
  }
  return `${addr} is already in use: choose other addresses with --mqtt-listen / --http-listen`;
}

async function enrollCode(argv: string[]): Promise<void> {
  const f = parseFlags(argv, ENROLL_CODE);
  const owner = required(f.owner, '--owner', ENROLL_CODE);
  const ttlHours = f['ttl-hours'] === undefined ? undefined : positiveNumber(f['ttl-hours'], '--ttl-hours', ENROLL_CODE, 0);
  const cfg = configWithFlags(f);
  const market = f.market ?? cfg.markets[0]?.id ?? '';
  const ttlMs = ttlHours === undefined ? cfg.enrollmentCodeTtlMs : ttlHours * 3600_000;
  const ledger = await openLedger(cfg);
  try {
    for (const m of cfg.markets) await ledger.putMarket({ ...m, id: m.id as MarketId });
    const { code, expiresAtMs } = await new Enrollment(ledger, { now: Date.now, mqttUrl: () => '' }).issueCode({ market, owner, ttlMs });
    console.log(code);
    console.error(`one-time installer code for ${owner} in ${market}, valid until ${new Date(expiresAtMs).toISOString()}`);
    console.error(`on the gateway: gtx gateway enroll --config gateway.toml --url <settlement http url> --code ${code}`);
  } catch (e) {
    if (e instanceof EnrollmentError) throw new UsageError(e.message, ENROLL_CODE.name);
    throw e;
  } finally {
    await ledger.close();
  }
}

async function mosquittoAcl(argv: string[]): Promise<void> {
  const f = parseFlags(argv, ACL);
  const out = resolve(required(f.out, '--out', ACL));
  const port = portNumber(f.port, '--port', ACL, 1883);
  if (port === 0) throw new UsageError('--port must be the port Mosquitto listens on, 1 to 65535', ACL.name);
  const workers = positiveNumber(f.workers, '--workers', ACL, 1);
  if (!Number.isInteger(workers) || workers > 999) throw new UsageError(`--workers must be a whole number from 1 to 999, got "${f.workers}"`, ACL.name);
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
}

async function revokeGateway(argv: string[]): Promise<void> {
  const f = parseFlags(argv, REVOKE);
  const id = required(f.id, '--id', REVOKE);
  const ledger = await openLedger(configWithFlags(f));
  try {
    if (!(await ledger.setGatewayStatus(id, 'revoked', Date.now()))) throw new CliError(`gateway ${id} is not registered in this ledger (check --config / --data)`);
  } finally {
    await ledger.close();
  }
  console.log(`gateway ${id} revoked: its readings and MQTT logins are refused from now on (running settlements notice within 2 s)`);
}

/** `gtx settlement api-key create|list|revoke`: REST API keys in the ledger (docs/settlement.md, "API keys"). */
async function createApiKey(argv: string[]): Promise<void> {
  const f = parseFlags(argv, KEY_CREATE);
  const role = required(f.role, '--role', KEY_CREATE);
  if (!isApiRole(role)) throw new UsageError(`--role must be one of ${API_ROLES.join(', ')}, got "${role}"`, KEY_CREATE.name);
  const label = f.label ?? '';
  if (label.length > 200) throw new UsageError('--label must be at most 200 characters', KEY_CREATE.name);
  if (role === 'prosumer' && f.account === undefined) throw new UsageError('a prosumer key needs --account ID, the account it acts for', KEY_CREATE.name);
  if (role !== 'prosumer' && f.account !== undefined) throw new UsageError(`--account is for prosumer keys only; a ${role} key is not bound to an account`, KEY_CREATE.name);
  const customers = f.customers === undefined ? [] : [...new Set(f.customers.split(',').map((c) => c.trim()).filter((c) => c !== ''))];
  if (role === 'installer' && customers.length === 0) throw new UsageError('an installer key needs --customers ID,ID…, the customer accounts it serves', KEY_CREATE.name);
  if (role !== 'installer' && f.customers !== undefined) throw new UsageError(`--customers is for installer keys only; a ${role} key is not bound to customers`, KEY_CREATE.name);
  if (customers.length > MAX_INSTALLER_CUSTOMERS) throw new UsageError(`--customers names ${customers.length} accounts; an installer key serves at most ${MAX_INSTALLER_CUSTOMERS}`, KEY_CREATE.name);
  const bad = customers.find((c) => !ACCOUNT_ID.test(c));
  if (bad !== undefined) throw new UsageError(`--customers: "${bad}" is not an account id (1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit)`, KEY_CREATE.name);
  const ledger = await openLedger(configWithFlags(f));
  try {
    if (f.account !== undefined && !(await ledger.getAccount(f.account))) {
      throw new CliError(`no account ${f.account} in the ledger: accounts are created by enrollment codes (gtx settlement enroll-code --owner ${f.account})`);
    }
    const { key, record } = await new ApiKeyStore(ledger.db).create(role, label, f.account ?? null, customers);
    // The key alone on stdout, so `KEY=$(gtx settlement api-key create …)` works; the rest is for the person.
    console.log(key);
    const bound = record.account ? ` for account ${record.account}` : record.customers ? ` for customers ${record.customers.join(', ')}` : '';
    console.error(`API key ${record.id} (role ${role}${bound}${label ? `, "${label}"` : ''}) created; it is shown only this once.`);
    console.error(`send it as "Authorization: Bearer <key>"; revoke it with: gtx settlement api-key revoke --id ${record.id}`);
  } finally {
    await ledger.close();
  }
}

async function listApiKeys(argv: string[]): Promise<void> {
  const f = parseFlags(argv, KEY_LIST);
  const ledger = await openLedger(configWithFlags(f));
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
      // What a key is bound to follows its label: a prosumer's account, an installer's customers.
      const bound = k.account !== null ? `  [account ${k.account}]` : k.customers ? `  [customers ${k.customers.join(',')}]` : '';
      console.log(`${k.id.padEnd(10)}  ${k.role.padEnd(roleWidth)}  ${new Date(k.createdAtMs).toISOString()}  ${revoked.padEnd(24)}  ${k.label}${bound}`);
    }
  } finally {
    await ledger.close();
  }
}

async function revokeApiKey(argv: string[]): Promise<void> {
  const f = parseFlags(argv, KEY_REVOKE);
  const id = required(f.id, '--id', KEY_REVOKE);
  const ledger = await openLedger(configWithFlags(f));
  let outcome: Awaited<ReturnType<ApiKeyStore['revoke']>>;
  try {
    outcome = await new ApiKeyStore(ledger.db).revoke(id);
  } finally {
    await ledger.close();
  }
  if (outcome === 'unknown') throw new CliError(`no API key with id ${id} (gtx settlement api-key list shows them)`);
  console.log(outcome === 'revoked' ? `API key ${id} revoked: the API refuses it from now on` : `API key ${id} was already revoked`);
}

import { existsSync, readFileSync } from 'node:fs';
import { gatewayId, loadPublicKey } from '../../protocol/index.ts';
import { defaultSettlementConfig, loadSettlementConfig, type SettlementConfig } from '../../settlement/config.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { openLedger as openConfiguredLedger } from '../../settlement/ledger/open.ts';
import { parseFlags, required, UsageError } from '../args.ts';

const USAGE = `gtx settlement run [--config FILE]
gtx settlement register-gateway --id ID --key PUBLIC.pem [--config FILE]
gtx settlement revoke-gateway --id ID [--config FILE]

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
    case 'register-gateway': {
      const f = parseFlags(rest, { config: { type: 'string' }, id: { type: 'string' }, key: { type: 'string' } }, USAGE);
      const id = gatewayId(required(f.id, '--id', USAGE));
      const keyPath = required(f.key, '--key', USAGE);
      const pem = readFileSync(keyPath, 'utf8');
      try {
        loadPublicKey(pem);
      } catch (e) {
        throw new UsageError(`${keyPath}: not an Ed25519 public key in SPKI PEM (${(e as Error).message})`, USAGE);
      }
      const ledger = await openLedger(settlementConfigFrom(f.config));
      const existing = await ledger.getGateway(id);
      await ledger.putGateway({ id, publicKeyPem: pem, status: 'active', createdAtMs: existing?.createdAtMs ?? Date.now() });
      await ledger.close();
      console.log(`gateway ${id} registered (active)`);
      return;
    }
    case 'revoke-gateway': {
      const f = parseFlags(rest, { config: { type: 'string' }, id: { type: 'string' } }, USAGE);
      const id = required(f.id, '--id', USAGE);
      const ledger = await openLedger(settlementConfigFrom(f.config));
      const gw = await ledger.getGateway(id);
      if (!gw) {
        await ledger.close();
        throw new UsageError(`gateway ${id} is not registered`, USAGE);
      }
      await ledger.putGateway({ ...gw, status: 'revoked' });
      await ledger.close();
      console.log(`gateway ${id} revoked: its readings are refused from now on`);
      return;
    }
    default:
      throw new UsageError(sub ? `unknown settlement command "${sub}"` : 'settlement needs a command', USAGE);
  }
}

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Settlement } from '../../settlement/main.ts';
import { ApiKeyStore, type ApiPrincipal, type ApiRole } from '../../settlement/registry/api-keys.ts';

/**
 * The demo's sign-in keys, one per role a person tries the web pages with: utility (also the
 * key the printed curl lines use), installer (the demo homes' accounts as its customers).
 * Each is kept in the data dir (mode 0600) and reused on a restart instead of adding keys; a
 * saved key that no longer fits (revoked, or the homes changed) is replaced.
 */
export interface DemoKeys {
  utility: string;
  installer: string;
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);

async function savedOrNew(
  store: ApiKeyStore,
  file: string,
  fits: (p: ApiPrincipal) => boolean,
  create: () => Promise<{ key: string }>,
): Promise<string> {
  const saved = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  const principal = saved ? await store.authenticate(saved) : undefined;
  if (principal && fits(principal)) return saved;
  const { key } = await create();
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}

export async function demoKeys(settlement: Settlement, dataDir: string, customers: readonly string[]): Promise<DemoKeys> {
  const store = new ApiKeyStore(settlement.ledger.db);
  const role = (r: ApiRole) => (p: ApiPrincipal) => p.role === r;
  return {
    // demo-api-key: the name earlier demo versions kept the utility key under.
    utility: await savedOrNew(store, join(dataDir, 'demo-api-key'), role('utility'), () => store.create('utility', 'gtx demo')),
    installer: await savedOrNew(
      store,
      join(dataDir, 'demo-installer-key'),
      (p) => p.role === 'installer' && sameSet(p.customers, customers),
      () => store.create('installer', 'gtx demo installer', null, customers),
    ),
  };
}

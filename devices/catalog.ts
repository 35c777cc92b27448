// The meter catalog: every JSON file in devices/catalog/, validated when first used.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DefinitionError, parseDefinition, type DeviceDefinition } from './definition.ts';

export const CATALOG_DIR = fileURLToPath(new URL('./catalog/', import.meta.url));

export class UnknownDeviceError extends Error {
  override readonly name = 'UnknownDeviceError';
  constructor(
    readonly requested: string,
    readonly known: readonly string[],
  ) {
    super(`unknown device model ${JSON.stringify(requested)}; known models: ${known.join(', ')}`);
  }
}

export interface Catalog {
  /** Looks a definition up by id or alias; throws UnknownDeviceError listing what exists. */
  get(idOrAlias: string): DeviceDefinition;
  has(idOrAlias: string): boolean;
  /** All definitions, sorted by id. */
  list(): DeviceDefinition[];
}

// Definitions are shared by every caller, so nobody may change one under another's feet.
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** Loads and validates every *.json in `dir`. Throws DefinitionError naming the file and field. */
export function loadCatalog(dir: string = CATALOG_DIR): Catalog {
  const files = readdirSync(dir)
    .filter((name) => name.endsWith('.json'))
    .sort();
  const byId = new Map<string, DeviceDefinition>();
  const byName = new Map<string, DeviceDefinition>();
  const origin = new Map<string, string>();

  for (const file of files) {
    const path = join(dir, file);
    const def = deepFreeze(parseDefinition(readFileSync(path, 'utf8'), path));
    const names = [def.id, ...(def.aliases ?? [])];
    names.forEach((name, i) => {
      const clash = origin.get(name);
      if (clash !== undefined) {
        const field = i === 0 ? '/id' : `/aliases/${i - 1}`;
        throw new DefinitionError(path, field, `${JSON.stringify(name)} is already used by ${clash}`);
      }
      origin.set(name, path);
      byName.set(name, def);
    });
    byId.set(def.id, def);
  }

  const knownNames = (): string[] =>
    [...byId.values()].map((d) => (d.aliases?.length ? `${d.id} (${d.aliases.join(', ')})` : d.id));

  return {
    get(idOrAlias) {
      const def = byName.get(idOrAlias) ?? byName.get(idOrAlias.toLowerCase());
      if (def === undefined) throw new UnknownDeviceError(idOrAlias, knownNames());
      return def;
    },
    has(idOrAlias) {
      return byName.has(idOrAlias) || byName.has(idOrAlias.toLowerCase());
    },
    list() {
      return [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
    },
  };
}

let bundled: Catalog | undefined;

// Loaded lazily so that importing this module never touches the disk or throws by itself.
function bundledCatalog(): Catalog {
  bundled ??= loadCatalog();
  return bundled;
}

/** The bundled definition for an id or alias ("eastron-sdm120" or "sdm120"). */
export function getDefinition(idOrAlias: string): DeviceDefinition {
  return bundledCatalog().get(idOrAlias);
}

/** Every bundled definition, sorted by id. */
export function listDefinitions(): DeviceDefinition[] {
  return bundledCatalog().list();
}

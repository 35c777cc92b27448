// The meter catalog: every JSON and TOML file in devices/catalog/, validated when first used,
// and single definition files a user writes (a `[[meters]]` model may name one).
import { readdirSync, readFileSync } from 'node:fs';
import { extname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import { DefinitionError, parseDefinition, validateDefinition, type DeviceDefinition } from './definition.ts';

export const CATALOG_DIR = fileURLToPath(new URL('./catalog/', import.meta.url));

/** File endings a definition may have. */
export const DEFINITION_EXTENSIONS = ['.json', '.toml'] as const;

export class UnknownDeviceError extends Error {
  override readonly name = 'UnknownDeviceError';
  constructor(
    readonly requested: string,
    readonly known: readonly string[],
  ) {
    super(`unknown device model ${JSON.stringify(requested)}; known models: ${known.join(', ')}; or give the path of a .json or .toml definition file`);
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

/** Parses TOML text (same fields as the JSON) and validates it; a syntax error is a DefinitionError too. */
export function parseTomlDefinition(text: string, source: string): DeviceDefinition {
  let input: unknown;
  try {
    input = parseToml(text);
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new DefinitionError(source, '', `not valid TOML: ${message}`);
  }
  return validateDefinition(input, source);
}

function isDefinitionFile(name: string): boolean {
  return (DEFINITION_EXTENSIONS as readonly string[]).includes(extname(name).toLowerCase());
}

/**
 * Reads one definition file, JSON or TOML by its extension, validated and frozen. Throws
 * DefinitionError naming the file and field, or the file system error for a missing file.
 */
export function loadDefinitionFile(path: string): DeviceDefinition {
  const ext = extname(path).toLowerCase();
  if (!isDefinitionFile(path)) {
    throw new DefinitionError(path, '', `a definition file ends in ${DEFINITION_EXTENSIONS.join(' or ')}`);
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? String(err.code) : '';
    throw new DefinitionError(path, '', code === 'ENOENT' ? 'no such file' : `cannot read it: ${err instanceof Error ? err.message : String(err)}`);
  }
  return deepFreeze(ext === '.toml' ? parseTomlDefinition(text, path) : parseDefinition(text, path));
}

/** Loads and validates every *.json and *.toml in `dir`. Throws DefinitionError naming the file and field. */
export function loadCatalog(dir: string = CATALOG_DIR): Catalog {
  const files = readdirSync(dir).filter(isDefinitionFile).sort();
  const byId = new Map<string, DeviceDefinition>();
  const byName = new Map<string, DeviceDefinition>();
  const origin = new Map<string, string>();

  for (const file of files) {
    const path = join(dir, file);
    const def = loadDefinitionFile(path);
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
    [...byId.values()].sort((a, b) => a.id.localeCompare(b.id)).map((d) => (d.aliases?.length ? `${d.id} (${d.aliases.join(', ')})` : d.id));

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

/** True when `model` names a definition file rather than a catalog id. */
export function isDefinitionPath(model: string): boolean {
  return isDefinitionFile(model) || model.includes('/') || model.includes('\\');
}

/**
 * A catalog definition by id or alias, or a definition file by path (`.json` / `.toml`; a
 * relative path is taken from `baseDir`, default the working directory). A gateway config
 * should pass its own directory, so `model = "meters/my-meter.toml"` sits beside it.
 */
export function resolveDefinition(model: string, baseDir: string = process.cwd()): DeviceDefinition {
  if (!isDefinitionPath(model)) return bundledCatalog().get(model);
  return loadDefinitionFile(isAbsolute(model) ? model : resolve(baseDir, model));
}

/** The bundled definition for an id or alias ("eastron-sdm120" or "sdm120"), or a definition file path. */
export function getDefinition(idOrAlias: string): DeviceDefinition {
  return resolveDefinition(idOrAlias);
}

/** Every bundled definition, sorted by id. */
export function listDefinitions(): DeviceDefinition[] {
  return bundledCatalog().list();
}

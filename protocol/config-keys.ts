/**
 * The one configuration rule both loaders share (settlement/config.ts and gateway/config.ts,
 * which never import each other): a key or table the program does not know is refused, never
 * ignored, because a typo silently ignored runs with the default the operator meant to change.
 * It lives in protocol/ as the only folder both sides import; it depends on nothing.
 */

/** Declared keys per table of a TOML file: `table` for [name], `array` for [[name]]. */
export type ConfigShape = Record<string, { kind: 'table' | 'array'; keys: readonly string[] }>;

/** Edit distance: insert, delete, substitute or swap two neighbours, each 1 (`hots` → `host` is 1). Small strings only. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The candidate `word` most likely meant, if one is close: case and `-`/`_` ignored, then at
 * most 1 edit for short words and 2 for longer ones (so `sqlite_pth` finds `sqlite_path` but
 * `port` does not find `host`).
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/-/g, '_');
  const w = norm(word);
  const limit = w.length <= 4 ? 1 : 2;
  let best: { c: string; d: number } | undefined;
  for (const c of candidates) {
    const d = editDistance(w, norm(c));
    if (d <= limit && (!best || d < best.d)) best = { c, d };
  }
  return best?.c;
}

const isTable = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

/**
 * The first unknown table or key in a parsed TOML document, as a message naming the file, the
 * table and the key, with a suggestion when one is close; undefined when every key is declared.
 * A known table of the wrong kind is left to the loader, which says what it must be.
 */
export function unknownConfigKey(doc: Record<string, unknown>, shape: ConfigShape, file: string): string | undefined {
  const tables = Object.keys(shape);
  const label = (t: string) => (shape[t]!.kind === 'array' ? `[[${t}]]` : `[${t}]`);
  for (const [name, value] of Object.entries(doc)) {
    const spec = shape[name];
    if (!spec) {
      if (isTable(value) || (Array.isArray(value) && value.length > 0 && value.every(isTable))) {
        const guess = closest(name, tables);
        const typed = Array.isArray(value) ? `[[${name}]]` : `[${name}]`;
        return `${file}: unknown table ${typed}; ${guess ? `did you mean ${label(guess)}?` : `known tables: ${tables.map(label).join(', ')}`}`;
      }
      // A key above every table: say which table it belongs in when one declares it.
      const home = tables.find((t) => shape[t]!.keys.includes(name));
      return home
        ? `${file}: ${name} must be inside a table; did you mean ${name} under ${label(home)}?`
        : `${file}: unknown key ${name} outside any table; keys belong in a table (${tables.map(label).join(', ')})`;
    }
    const entries: Array<[string, unknown]> =
      spec.kind === 'array' ? (Array.isArray(value) ? value.map((v, i): [string, unknown] => [`[[${name}]] #${i + 1}`, v]) : []) : [[`[${name}]`, value]];
    for (const [where, entry] of entries) {
      if (!isTable(entry)) continue;
      for (const [key, v] of Object.entries(entry)) {
        if (spec.keys.includes(key)) continue;
        const guess = closest(key, spec.keys);
        const what = isTable(v) ? `unknown table [${name}.${key}]` : `unknown key ${key}`;
        return `${file} ${where}: ${what}; ${guess ? `did you mean ${guess}?` : `known keys: ${spec.keys.join(', ')}`}`;
      }
    }
  }
  return undefined;
}

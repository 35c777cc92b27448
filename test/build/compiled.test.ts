import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workerEntry } from '../../settlement/ledger/worker-entry.ts';
import { tempDir } from '../support/tmp.ts';
import { settlementNodeFlags } from '../bench/node-flags.ts';

/**
 * What `gtx` runs is dist/ (npm run build; npm test builds first): compiled JavaScript with no
 * TypeScript loader, its worker threads included.
 */

const ROOT = join(import.meta.dirname, '../..');
const DIST = join(ROOT, 'dist');
const RUNTIME = ['protocol', 'devices', 'gateway', 'settlement', 'bin'];
/** Plain-JS files that are not part of dist/: the CLI's launcher, the build and the tsx shim of the tests. */
const NOT_BUILT = ['bin/gtx.js', 'bin/build.js', 'settlement/ledger/commit-worker.js'];

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

const node = (args: string[], opts: { cwd?: string; timeout?: number } = {}) =>
  spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, GTX_LOG_LEVEL: 'error' }, timeout: opts.timeout ?? 60_000, cwd: opts.cwd });

describe('the build (dist/)', () => {
  it('holds every runtime module compiled, with .js imports, and the files they read', () => {
    expect(existsSync(join(DIST, 'bin/cli.js')), 'dist/ is missing: run `npm run build` (npm test does)').toBe(true);
    for (const file of RUNTIME.flatMap((d) => filesUnder(join(ROOT, d)))) {
      if (file.endsWith('.md') || NOT_BUILT.includes(file)) continue;
      if (file.endsWith('.ts')) {
        const js = readFileSync(join(DIST, file.replace(/\.ts$/, '.js')), 'utf8');
        // A relative import left as ".ts" would fail at run time without a loader.
        expect(js, file).not.toMatch(/(from\s*|import\s*\(\s*)["']\.{1,2}\/[^"']*\.ts["']/);
      } else {
        expect(readFileSync(join(DIST, file), 'utf8'), `${file} is read at run time: bin/build.js copies it to dist/`).toBe(readFileSync(join(ROOT, file), 'utf8'));
      }
    }
  });

  it('runs with the V8 flags of the first line of bin/gtx.js in the benchmark too', () => {
    const flags = settlementNodeFlags(ROOT);
    expect(flags).toContain('--max-semi-space-size=32');
    const scripts = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts as Record<string, string>;
    // The ingest benchmark runs the settlement in its own process, so node must get them there.
    for (const f of flags) expect(scripts.bench).toContain(f);
    expect(scripts.start).toBe('./bin/gtx.js demo');
  });

  it('starts workers from compiled modules when compiled, from the tsx shim when TypeScript', () => {
    expect(workerEntry('file:///app/dist/settlement/ledger/commit-thread.js', './commit-worker-main.js', './commit-worker.js').href).toBe(
      'file:///app/dist/settlement/ledger/commit-worker-main.js',
    );
    expect(workerEntry('file:///app/settlement/ledger/commit-thread.ts', './commit-worker-main.js', './commit-worker.js').href).toBe(
      'file:///app/settlement/ledger/commit-worker.js',
    );
  });
});

describe('gtx from dist/ where tsx cannot be loaded', () => {
  // A copy of the package whose node_modules links every installed package except tsx: any
  // import of tsx by the compiled code, on the main thread or a worker thread, fails there.
  const dir = tempDir('gtx-build-');
  afterAll(() => dir.remove());
  const app = join(dir.path, 'app');

  beforeAll(() => {
    cpSync(DIST, join(app, 'dist'), { recursive: true });
    mkdirSync(join(app, 'bin'));
    copyFileSync(join(ROOT, 'bin/gtx.js'), join(app, 'bin/gtx.js'));
    copyFileSync(join(ROOT, 'package.json'), join(app, 'package.json'));
    mkdirSync(join(app, 'node_modules'));
    for (const name of readdirSync(join(ROOT, 'node_modules'))) {
      if (name.startsWith('.') || name === 'tsx') continue;
      symlinkSync(join(ROOT, 'node_modules', name), join(app, 'node_modules', name), 'dir');
    }
  });

  it('has no tsx to load (the premise of the tests below)', () => {
    const probe = node(['--input-type=module', '-e', "import('better-sqlite3').then(() => import('tsx/esm/api')).then(() => process.exit(0), (e) => { console.log(e.code); process.exit(3); })"], { cwd: app });
    expect(probe.stdout.trim()).toBe('ERR_MODULE_NOT_FOUND');
    expect(probe.status).toBe(3);
  });

  it('gtx --help', () => {
    const r = node([join(app, 'bin/gtx.js'), '--help']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^gtx — GridTokenX command line/);
  });

  it('gtx demo: the compiled settlement verifies readings and commits them through its worker thread', () => {
    const data = join(dir.path, 'data');
    const r = node([join(app, 'bin/gtx.js'), 'demo', '--data', data, '--duration', '8', '--mqtt-port', '0', '--http-port', '0', '--fresh']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/readings verified \d+/);
    expect(r.stdout).toMatch(/stopped: ledger holds [1-9]\d* readings .*; 0 rejections recorded/);
    expect(r.stderr).not.toMatch(/tsx/);
  }, 60_000);

  it('gtx says how to build when dist/ is missing', () => {
    const bare = join(dir.path, 'bare');
    mkdirSync(join(bare, 'bin'), { recursive: true });
    copyFileSync(join(ROOT, 'bin/gtx.js'), join(bare, 'bin/gtx.js'));
    copyFileSync(join(ROOT, 'package.json'), join(bare, 'package.json'));
    const r = node([join(bare, 'bin/gtx.js'), '--help']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringContaining('run `npm run build`')]);
  });
});

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Settlement } from '../../settlement/main.ts';
import { freePort } from '../support/ports.ts';
import { enrollGatewayConfig, gatewayConfig, startSimulator, startTestSettlement } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);

/**
 * This package as `npm install` leaves it for Node-RED: compiled into a throwaway dist/ (as
 * `npm run build` does, so the shared dist/ other tests use is left alone), beside its
 * package.json, with the editor files and the catalog copied as bin/build.js copies them.
 */
function buildPackage(dir: string): string {
  const pkg = join(dir, 'gridtokenx');
  mkdirSync(pkg, { recursive: true });
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')], { cwd: root, stdio: 'pipe' });
  const nodes = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } })['node-red'].nodes;
  for (const entry of Object.values(nodes)) {
    const src = entry.replace(/^dist\//, '');
    cpSync(join(root, src), join(pkg, entry));
    cpSync(join(root, src.replace(/\.cjs$/, '.html')), join(pkg, entry.replace(/\.cjs$/, '.html')));
  }
  cpSync(join(root, 'flows/nodes/icons'), join(pkg, 'dist/flows/nodes/icons'), { recursive: true });
  cpSync(join(root, 'devices/catalog'), join(pkg, 'dist/devices/catalog'), { recursive: true });
  cpSync(join(root, 'package.json'), join(pkg, 'package.json'));
  symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'));
  return pkg;
}

interface FlowNode {
  id: string;
  type: string;
  [k: string]: unknown;
}

describe('a real Node-RED 4.1 runtime running flows/home-gateway.json', () => {
  const dir = tempDir('gtx-nodered-');
  let settlement: Settlement | undefined;
  let red: ChildProcess | undefined;
  let redOutput = '';
  let stopSim: (() => Promise<void>) | undefined;

  afterAll(async () => {
    if (red && red.exitCode === null) {
      const exited = new Promise((r) => red!.once('exit', r));
      red.kill('SIGINT');
      await exited;
    }
    await stopSim?.();
    await settlement?.stop();
    dir.remove();
  });

  beforeAll(() => {
    const pkg = buildPackage(dir.path);
    // The user directory as `npm install /path/to/gridtokenx` in ~/.node-red leaves it.
    mkdirSync(join(dir.path, 'userDir', 'node_modules'), { recursive: true });
    symlinkSync(pkg, join(dir.path, 'userDir', 'node_modules', 'gridtokenx'));
  }, 120_000);

  it('loads the nodes from the installed package and gets signed readings acknowledged into the ledger', async () => {
    settlement = await startTestSettlement(dir.path, 0, true);
    const { sim, port: meterPort } = await startSimulator('sdm120', 'household', 11);
    stopSim = () => sim.stop();
    const flow = JSON.parse(readFileSync(join(root, 'flows/home-gateway.json'), 'utf8')) as FlowNode[];
    const meter = flow.find((n) => n.type === 'gtx-meter')!;
    const config = flow.find((n) => n.type === 'gtx-config')!;
    const publish = flow.find((n) => n.type === 'gtx-publish')!;
    // The gateway as `gtx gateway init` and `enroll` set it up, with the flow's meter id.
    const cfg = gatewayConfig(dir.path, 'gw-nodered-home', settlement.brokerUrl, [{ id: String(meter.meter), model: 'sdm120', port: meterPort }]);
    await enrollGatewayConfig(settlement, cfg);

    // The flow as an installer fills it in: the data dir, the meter's address; quicker for a test.
    Object.assign(config, { dataDir: cfg.dataDir, gatewayId: cfg.id });
    Object.assign(meter, { host: '127.0.0.1', port: meterPort, interval: 0.5 });
    Object.assign(publish, { batchAge: 0.5 });
    const userDir = join(dir.path, 'userDir');
    writeFileSync(join(userDir, 'flows.json'), JSON.stringify(flow));
    const httpPort = await freePort();
    writeFileSync(
      join(userDir, 'settings.cjs'),
      `module.exports = { uiHost: '127.0.0.1', uiPort: ${httpPort}, flowFile: 'flows.json', credentialSecret: false, logging: { console: { level: 'info' } } };\n`,
    );
    red = spawn(process.execPath, [require.resolve('node-red/red.js'), '--userDir', userDir, '--settings', join(userDir, 'settings.cjs')], {
      cwd: userDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    red.stdout!.on('data', (d: Buffer) => (redOutput += d.toString()));
    red.stderr!.on('data', (d: Buffer) => (redOutput += d.toString()));

    const ledgerHas = async (n: number) => (await settlement!.ledger.readings(String(meter.meter))).length >= n;
    try {
      await waitFor(() => /Started flows/.test(redOutput) || red!.exitCode !== null, 'Node-RED to start its flows', 60_000);
      expect(redOutput).not.toMatch(/Waiting for missing types|Failed to load/);
      // The palette has the package's nodes, and the meter editor's model list is served.
      const nodes = (await (await fetch(`http://127.0.0.1:${httpPort}/nodes`, { headers: { accept: 'application/json' } })).json()) as Array<{ module: string; types: string[] }>;
      expect(nodes.filter((n) => n.module === 'gridtokenx').flatMap((n) => n.types).sort()).toEqual(['gtx-config', 'gtx-meter', 'gtx-order', 'gtx-price', 'gtx-publish']);
      // The editor gets each node's .html (form and help text) and its icon.
      const html = await (await fetch(`http://127.0.0.1:${httpPort}/nodes`, { headers: { accept: 'text/html' } })).text();
      for (const type of ['gtx-config', 'gtx-meter', 'gtx-publish', 'gtx-price', 'gtx-order']) expect(html).toContain(`data-help-name="${type}"`);
      expect((await fetch(`http://127.0.0.1:${httpPort}/icons/gridtokenx/gtx-meter.svg`)).headers.get('content-type')).toMatch(/svg/);
      const models = (await (await fetch(`http://127.0.0.1:${httpPort}/gtx/models`)).json()) as Array<{ id: string }>;
      expect(models.map((m) => m.id)).toContain('eastron-sdm120');

      await waitFor(() => ledgerHas(3), 'three readings from Node-RED in the ledger', 60_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- Node-RED output ---\n${redOutput}`);
    }
    // Freeze the meter; a reading taken after that carries exactly its registers' values.
    sim.pause();
    const frozenAt = Date.now();
    const id = String(meter.meter);
    await waitFor(async () => Date.parse((await settlement!.ledger.readings(id)).at(-1)!.ts) > frozenAt + 100, 'a reading after the freeze', 30_000);
    const rs = await settlement.ledger.readings(id);
    expect(rs.map((r) => r.seq)).toEqual(rs.map((_, i) => i + 1));
    const want = sim.decoded();
    const last = rs.at(-1)!;
    expect({ importWh: last.importWh, exportWh: last.exportWh, powerW: last.powerW, voltageMilliV: last.voltageMilliV }).toEqual({
      importWh: want.importWh,
      exportWh: want.exportWh,
      powerW: want.powerW,
      voltageMilliV: want.voltageMilliV,
    });
  }, 120_000);
});

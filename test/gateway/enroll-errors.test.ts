import { existsSync, readFileSync, statSync } from 'node:fs';
import { idFromKey } from '../../gateway/keys.ts';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Settlement } from '../../settlement/main.ts';
import { freePort } from '../support/ports.ts';
import { startTestSettlement } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { writeGatewayToml } from './gateway-toml.ts';
import { gtxAsync, gtxSync, type CliRun } from '../support/cli.ts';

/**
 * `gtx gateway enroll` names why an enrollment failed and exits 2; `gtx gateway init` does not
 * take over a key that is already there. The real CLI against a real settlement.
 */

/** The CLI, asynchronously: several enrollments wait on the network at once. */
const gtx = (args: string[]) => gtxAsync(args);

describe('gtx gateway enroll when it cannot enroll', () => {
  const dir = tempDir('gtx-enroll-errors-');
  let settlement: Settlement;
  let silent: Server;
  const held: Socket[] = [];
  let config: string;

  beforeAll(async () => {
    settlement = await startTestSettlement(dir.path, 0, true);
    // Takes connections and never answers: a settlement behind a black hole.
    silent = createServer((s) => held.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    config = writeGatewayToml(dir.path, { id: 'gw-enroll-err', meter: 'm-enroll-err', meterPort: 5020 });
  });
  afterAll(async () => {
    for (const s of held) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
    await settlement.stop();
    dir.remove();
  });

  it('names the cause of each failure in one line and exits 2', { timeout: 90_000 }, async () => {
    const closed = await freePort();
    const silentPort = (silent.address() as { port: number }).port;
    const enroll = (url: string, code = 'GTX-0000-0000-0000') => gtx(['gateway', 'enroll', '--config', config, '--url', url, '--code', code]);
    // All at once: the timeout case alone takes the enrollment's 15 s.
    const [refused, unknownHost, noScheme, timeout, refusal] = await Promise.all([
      enroll(`http://127.0.0.1:${closed}`),
      enroll('http://gtx.invalid:8080'),
      enroll('127.0.0.1:8080'),
      enroll(`http://127.0.0.1:${silentPort}`),
      enroll(settlement.httpUrl!),
    ]);
    const expected: Array<[CliRun, string]> = [
      [refused, `gtx: nothing listens at http://127.0.0.1:${closed}: is the settlement running, and is this its [http] address?\n`],
      [unknownHost, "gtx: cannot find the host gtx.invalid (of http://gtx.invalid:8080): check the host name in --url, or use the settlement's IP address\n"],
      [noScheme, 'gtx: --url must start with http:// or https://, e.g. http://127.0.0.1:8080\nsee: gtx gateway enroll --help\n'],
      [timeout, `gtx: no answer from http://127.0.0.1:${silentPort} within 15 s: is this the settlement's [http] address, and does a firewall let it through?\n`],
      [
        refusal,
        `gtx: settlement at ${settlement.httpUrl} refused the enrollment: code_unknown: installer code not recognised: check it, or ask the operator for a new one (HTTP 404)\n`,
      ],
    ];
    for (const [r, stderr] of expected) {
      expect({ status: r.status, stderr: r.stderr, stdout: r.stdout }).toEqual({ status: 2, stderr, stdout: '' });
    }
    // Nothing was saved: no MQTT login from a failed enrollment.
    expect(existsSync(join(dir.path, 'gw-enroll-err-data', 'mqtt-credentials.json'))).toBe(false);
  });
});

describe('gtx gateway init with a key already there', () => {
  const dir = tempDir('gtx-init-key-');
  afterAll(() => dir.remove());

  it('refuses to take it over unless --reuse-key, and never overwrites a config', { timeout: 60_000 }, async () => {
    const data = join(dir.path, 'gw-a');
    const first = await gtx(['gateway', 'init', '--id', 'gw-a', '--data-dir', data, '--write-config', join(dir.path, 'gw-a.toml')]);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toContain(`created key ${join(data, 'gateway.key')} (mode 0600)`);
    // The config names the data dir relative to itself, as the loader reads it.
    expect(readFileSync(join(dir.path, 'gw-a.toml'), 'utf8')).toMatch(/^data_dir = "gw-a" /m);
    const key = readFileSync(join(data, 'gateway.key'), 'utf8');

    const again = await gtx(['gateway', 'init', '--id', 'gw-a', '--data-dir', data, '--config', join(dir.path, 'gw-a2.toml')]);
    expect({ status: again.status, stderr: again.stderr, stdout: again.stdout }).toEqual({
      status: 2,
      stderr: `gtx: gateway key already exists at ${join(data, 'gateway.key')}; this id is in use on this machine: choose another --id or --data-dir, or pass --reuse-key to keep it\n`,
      stdout: '',
    });

    const overwrite = await gtx(['gateway', 'init', '--id', 'gw-b', '--data-dir', join(dir.path, 'gw-b'), '--write-config', join(dir.path, 'gw-a.toml')]);
    expect([overwrite.status, overwrite.stderr]).toEqual([2, `gtx: ${join(dir.path, 'gw-a.toml')} exists; not overwriting it: choose another --config FILE, or remove it\n`]);
    expect(existsSync(join(dir.path, 'gw-b'))).toBe(false); // refused before anything was created

    const reuse = await gtx(['gateway', 'init', '--id', 'gw-a', '--data-dir', data, '--reuse-key', '--config', join(dir.path, 'gw-a3.toml')]);
    expect(reuse.status, reuse.stderr).toBe(0);
    expect(reuse.stdout).toContain(`kept existing key ${join(data, 'gateway.key')}`);
    expect(readFileSync(join(data, 'gateway.key'), 'utf8')).toBe(key);
  });
});

describe('gtx gateway init with no flags', () => {
  const dir = tempDir('gtx-init-here-');
  afterAll(() => dir.remove());

  it('makes ./gateway.toml and a key in the folder it runs in, the id from the key, and the other commands read it by default', () => {
    const here = { cwd: dir.path };
    const none = gtxSync(['gateway', 'status'], here);
    expect([none.status, none.stderr]).toEqual([2, 'gtx: no gateway.toml in this folder: run gtx gateway init here, or pass --config FILE\n']);
    const r = gtxSync(['gateway', 'init'], here);
    expect(r.status, r.stderr).toBe(0);
    const pem = readFileSync(join(dir.path, 'gateway-data', 'gateway.pub.pem'), 'utf8');
    const id = idFromKey(pem);
    expect(id).toMatch(/^gw-[0-9a-f]{10}$/);
    expect(r.stdout).toContain(`wrote gateway.toml for gateway ${id}`);
    expect(statSync(join(dir.path, 'gateway-data', 'gateway.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir.path, 'gateway.toml'), 'utf8')).toMatch(new RegExp(`^id = "${id}"\\ndata_dir = "gateway-data"`, 'm'));
    const status = gtxSync(['gateway', 'status'], here);
    expect([status.status, status.stdout.split('\n')[0]]).toEqual([0, `gateway ${id}: no outbox yet at ${join(dir.path, 'gateway-data', 'outbox.sqlite')} (never run)`]);
    const twice = gtxSync(['gateway', 'init'], here);
    expect([twice.status, twice.stderr]).toEqual([2, 'gtx: ./gateway.toml exists; not overwriting it: choose another --config FILE, or remove it\n']);
  });
});


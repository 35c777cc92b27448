import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayClientId, topics } from '../../protocol/index.ts';
import { SETTLEMENT_USERNAME } from '../../settlement/broker/acl.ts';
import { newSecret } from '../../settlement/broker/credentials.ts';
import {
  mosquittoPasswordHash,
  removeFromPasswordFile,
  renderAclFile,
  renderMosquittoConfig,
  renderPasswordFile,
  upsertPasswordFile,
  writeMosquittoFiles,
} from '../../settlement/broker/mosquitto.ts';
import { MosquittoPasswordSync } from '../../settlement/broker/mosquitto-sync.ts';
import { freePort } from '../support/ports.ts';
import { mosquittoUser, startMosquitto, type MosquittoProcess } from '../support/mosquitto.ts';
import { findBinary, requireOrSkip } from '../support/services.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/** Written by `mosquitto_passwd -b pw alice secret-one` (Mosquitto 2.0.11, Debian 12). */
const MOSQUITTO_PASSWD_LINE = 'alice:$7$101$l4lhab+CiG2hak+x$BmcudKz99SczTUICqxAZh8hDWpEwNIGpmIIA8UyObkVz9+QJVj9vmYYEnC/Xnqar3tjnNvyxqmB37FGc61PflQ==';

/** Reproduces a `$7$` line with its own salt, to compare byte for byte. */
function rehash(line: string, secret: string): string {
  const [user, rest] = [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)];
  const [, , iterations, salt] = rest.split('$');
  return `${user}:${mosquittoPasswordHash(secret, Number(iterations), Buffer.from(salt!, 'base64'))}`;
}

describe('Mosquitto files', () => {
  it('hashes secrets exactly as mosquitto_passwd does ($7$, PBKDF2-SHA512, 101 iterations, 12-byte salt)', () => {
    expect(rehash(MOSQUITTO_PASSWD_LINE, 'secret-one')).toBe(MOSQUITTO_PASSWD_LINE);
    expect(rehash(MOSQUITTO_PASSWD_LINE, 'secret-two')).not.toBe(MOSQUITTO_PASSWD_LINE);
    expect(mosquittoPasswordHash('x')).toMatch(/^\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$/);
  });

  it('renders one password line per user, with a fresh salt each time', () => {
    const file = renderPasswordFile([
      { username: SETTLEMENT_USERNAME, secret: 's' },
      { username: 'gw-a', secret: 'a' },
    ]);
    const lines = file.trimEnd().split('\n');
    expect(lines.map((l) => l.split(':')[0])).toEqual([SETTLEMENT_USERNAME, 'gw-a']);
    expect(renderPasswordFile([{ username: 'gw-a', secret: 'a' }])).not.toBe(`${lines[1]}\n`);
    expect(renderPasswordFile([])).toBe('');
    expect(() => renderPasswordFile([{ username: 'a:b', secret: 'x' }])).toThrow(/':'/);
    expect(() => renderPasswordFile([{ username: 'gw-a', secret: 'x' }, { username: 'gw-a', secret: 'y' }])).toThrow(/twice/);
  });

  it('adds, replaces and removes users in an existing password file, keeping the other lines as they were', () => {
    const first = renderPasswordFile([{ username: SETTLEMENT_USERNAME, secret: 's' }, { username: 'gw-a', secret: 'a' }]);
    const [sLine, aLine] = first.trimEnd().split('\n');
    const next = upsertPasswordFile(first, [{ username: 'gw-a', secret: 'a2' }, { username: 'gw-b', secret: 'b' }]);
    const lines = next.trimEnd().split('\n');
    expect(lines[0]).toBe(sLine);
    expect(lines.map((l) => l.split(':')[0])).toEqual([SETTLEMENT_USERNAME, 'gw-a', 'gw-b']);
    expect(lines[1]).not.toBe(aLine);
    expect(rehash(lines[1]!, 'a2')).toBe(lines[1]);
    expect(removeFromPasswordFile(next, ['gw-a']).trimEnd().split('\n').map((l) => l.split(':')[0])).toEqual([SETTLEMENT_USERNAME, 'gw-b']);
  });

  it('renders an ACL that confines every gateway by %u and gives the settlement the namespace', () => {
    expect(renderAclFile().split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([
      'pattern write gtx/v1/gw/%u/readings',
      'pattern write gtx/v1/gw/%u/status',
      'pattern read gtx/v1/gw/%u/ack',
      'pattern read gtx/v1/gw/%u/reject',
      'pattern read gtx/v1/market/+/price',
      'pattern read gtx/v1/market/+/auction',
      'user gtx-settlement',
      'topic readwrite gtx/v1/#',
    ]);
  });

  it('gives each settlement worker its own user block in the ACL', () => {
    const lines = renderAclFile(['gtx-settlement-1', 'gtx-settlement-2']).split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines.slice(6)).toEqual(['user gtx-settlement-1', 'topic readwrite gtx/v1/#', 'user gtx-settlement-2', 'topic readwrite gtx/v1/#']);
    expect(() => renderAclFile([])).toThrow(/at least one/);
    expect(() => renderAclFile(['gtx-settlement\ntopic readwrite #'])).toThrow();
  });

  it('writes one secret file (0600) and one password line per worker', () => {
    const dir = tempDir('gtx-mosq-files-');
    try {
      const one = writeMosquittoFiles({ dir: join(dir.path, 'one'), port: 1884 });
      expect(one.workers).toEqual([{ username: 'gtx-settlement', secretFile: join(dir.path, 'one', 'settlement.secret') }]);
      const two = writeMosquittoFiles({ dir: join(dir.path, 'two'), port: 1884, workers: 2 });
      expect(two.workers.map((w) => w.username)).toEqual(['gtx-settlement-1', 'gtx-settlement-2']);
      const secrets = two.workers.map((w) => readFileSync(w.secretFile, 'utf8').trim());
      expect(new Set(secrets).size).toBe(2);
      for (const w of two.workers) expect(statSync(w.secretFile).mode & 0o777).toBe(0o600);
      const lines = readFileSync(two.passwd, 'utf8').trimEnd().split('\n');
      expect(lines.map((l) => l.split(':')[0])).toEqual(['gtx-settlement-1', 'gtx-settlement-2']);
      expect(rehash(lines[1]!, secrets[1]!)).toBe(lines[1]);
      expect(readFileSync(two.acl, 'utf8')).toContain('user gtx-settlement-2\ntopic readwrite gtx/v1/#\n');
      expect(readFileSync(two.conf, 'utf8')).toContain('use_username_as_clientid true\n');
    } finally {
      dir.remove();
    }
  });

  it('renders a configuration without anonymous access', () => {
    const conf = renderMosquittoConfig({ port: 8883, host: '127.0.0.1', passwordFile: '/etc/mosquitto/gtx.passwd', aclFile: '/etc/mosquitto/gtx.acl', persistence: true, dataDir: '/var/lib/mosquitto' });
    expect(conf).toContain('allow_anonymous false\n');
    expect(conf).toContain('password_file /etc/mosquitto/gtx.passwd\n');
    expect(conf).toContain('acl_file /etc/mosquitto/gtx.acl\n');
    // A listener option: it must follow the listener line.
    expect(conf).toContain('listener 8883 127.0.0.1\nuse_username_as_clientid true\n');
    expect(conf).toContain('persistence_location /var/lib/mosquitto/\n');
    expect(() => renderMosquittoConfig({ port: 1, passwordFile: 'a\nallow_anonymous true', aclFile: 'b' })).toThrow(/line breaks/);
    expect(() => renderMosquittoConfig({ port: 1, passwordFile: 'a', aclFile: 'b', persistence: true })).toThrow(/dataDir/);
  });
});

const MOSQUITTO = findBinary('mosquitto');

describe.skipIf(requireOrSkip('Mosquitto ACL test', !!MOSQUITTO, 'no mosquitto binary (Debian package "mosquitto")'))('a real Mosquitto with the generated files', () => {
  const dir = tempDir('gtx-mosquitto-');
  const secrets = { settlement: newSecret(), a: newSecret(), b: newSecret() };
  const passwordFile = join(dir.path, 'passwd');
  const pidFile = join(dir.path, 'mosquitto.pid');
  const clients: MqttClient[] = [];
  let mosq: MosquittoProcess | undefined;
  let output: string[] = [];
  let url = '';
  let n = 0;

  beforeAll(async () => {
    const port = await freePort();
    url = `mqtt://127.0.0.1:${port}`;
    const aclFile = join(dir.path, 'acl');
    writeFileSync(
      passwordFile,
      renderPasswordFile([
        { username: SETTLEMENT_USERNAME, secret: secrets.settlement },
        { username: 'gw-a', secret: secrets.a },
        { username: 'gw-b', secret: secrets.b },
      ]),
      { mode: 0o600 },
    );
    writeFileSync(aclFile, renderAclFile(), { mode: 0o600 });
    const conf = join(dir.path, 'mosquitto.conf');
    writeFileSync(conf, renderMosquittoConfig({ port, host: '127.0.0.1', passwordFile, aclFile, user: mosquittoUser() }));
    mosq = await startMosquitto(MOSQUITTO!, conf, port, pidFile);
    output = mosq.output;
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await mosq?.stop();
    dir.remove();
  });

  const options = (username: string, password: string, extra: IClientOptions = {}): IClientOptions => ({
    clientId: `mosq-test-${++n}`,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    username,
    password,
    ...extra,
  });

  async function connect(username: string, password: string, extra: IClientOptions = {}): Promise<MqttClient> {
    const c = await mqtt.connectAsync(url, options(username, password, extra));
    clients.push(c);
    return c;
  }

  async function refusedWith(username: string, password: string): Promise<number> {
    return mqtt.connectAsync(url, options(username, password)).then(
      (c) => {
        clients.push(c);
        throw new Error(`${username} was let in`);
      },
      (e: { code?: number }) => e.code ?? -1,
    );
  }

  function collect(c: MqttClient): Array<{ topic: string; payload: string }> {
    const got: Array<{ topic: string; payload: string }> = [];
    c.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
    return got;
  }

  it('accepts the hashes mosquitto_passwd makes, and ours are the same bytes', () => {
    const tool = findBinary('mosquitto_passwd');
    if (!tool) return; // comes with the same package; the recorded line above covers it
    const file = join(dir.path, 'tool.passwd');
    execFileSync(tool, ['-c', '-b', file, 'someone', 'some secret'], { stdio: 'pipe' });
    const line = readFileSync(file, 'utf8').trim();
    expect(rehash(line, 'some secret')).toBe(line);
  });

  it('refuses a wrong password and an unknown user (Mosquitto 2.0 answers 5 "not authorized" to both)', async () => {
    expect([4, 5]).toContain(await refusedWith('gw-a', secrets.b));
    expect([4, 5]).toContain(await refusedWith('gw-nobody', secrets.a));
  });

  it("delivers gateway A's readings to the settlement and the settlement's ack to A", async () => {
    const s = await connect(SETTLEMENT_USERNAME, secrets.settlement);
    const atSettlement = collect(s);
    await s.subscribeAsync(topics.allReadings, { qos: 1 });
    const a = await connect('gw-a', secrets.a);
    const atA = collect(a);
    await a.subscribeAsync([topics.ack('gw-a'), topics.reject('gw-a')], { qos: 1 });
    await a.publishAsync(topics.readings('gw-a'), 'reading 1', { qos: 1 });
    await waitFor(() => atSettlement.find((m) => m.topic === topics.readings('gw-a') && m.payload === 'reading 1'), 'the reading at the settlement');
    await s.publishAsync(topics.ack('gw-a'), 'ack 1', { qos: 1 });
    await waitFor(() => atA.find((m) => m.topic === topics.ack('gw-a') && m.payload === 'ack 1'), 'the ack at gw-a');
  });

  it("silently drops A's publishes on B's readings and on a price topic: the settlement never receives them", async () => {
    const s = await connect(SETTLEMENT_USERNAME, secrets.settlement);
    const atSettlement = collect(s);
    await s.subscribeAsync([topics.allReadings, topics.allPrices], { qos: 1 });
    const a = await connect('gw-a', secrets.a);
    const b = await connect('gw-b', secrets.b);
    // Mosquitto answers a denied QoS 1 publish with a PUBACK (MQTT 3.1.1 cannot say more) and keeps the connection.
    await a.publishAsync(topics.readings('gw-b'), 'forged by gw-a', { qos: 1 });
    await a.publishAsync(topics.price('thailand_central'), 'fake price', { qos: 1 });
    expect(a.connected).toBe(true);
    await b.publishAsync(topics.readings('gw-b'), 'from gw-b', { qos: 1 });
    await waitFor(() => atSettlement.find((m) => m.payload === 'from gw-b'), "gw-b's own reading");
    expect(atSettlement.map((m) => m.payload)).not.toContain('forged by gw-a');
    expect(atSettlement.map((m) => m.payload)).not.toContain('fake price');
    expect(output.some((l) => l.includes('Denied PUBLISH') && l.includes(topics.readings('gw-b')))).toBe(true);
  });

  it("never delivers B's acks to A, whatever A subscribes to", async () => {
    const a = await connect('gw-a', secrets.a);
    const atA = collect(a);
    // Mosquitto 2.0 grants these subscriptions and filters each message by the read ACL instead.
    await a.subscribeAsync([topics.ack('gw-b'), 'gtx/v1/gw/+/ack', 'gtx/v1/#', '#', topics.ack('gw-a'), topics.allPrices], { qos: 1 });
    const s = await connect(SETTLEMENT_USERNAME, secrets.settlement);
    await s.publishAsync(topics.ack('gw-b'), 'ack for gw-b', { qos: 1 });
    await s.publishAsync(topics.readings('gw-b'), 'reading of gw-b', { qos: 1 });
    await s.publishAsync(topics.price('thailand_central'), 'price', { qos: 1 });
    await s.publishAsync(topics.ack('gw-a'), 'ack for gw-a', { qos: 1 });
    await waitFor(() => atA.filter((m) => m.payload === 'ack for gw-a').length > 0, "gw-a's own ack");
    expect(new Set(atA.map((m) => m.payload))).toEqual(new Set(['price', 'ack for gw-a']));
  });

  it("delivers A's own last will, never a will A set on B's status topic", async () => {
    const s = await connect(SETTLEMENT_USERNAME, secrets.settlement);
    const atSettlement = collect(s);
    await s.subscribeAsync(topics.allStatus, { qos: 1 });
    const evil = await connect('gw-a', secrets.a, { will: { topic: topics.status('gw-b'), payload: Buffer.from('evil will'), qos: 1, retain: false } });
    const good = await connect('gw-a', secrets.a, { will: { topic: topics.status('gw-a'), payload: Buffer.from('offline'), qos: 1, retain: false } });
    evil.stream.destroy();
    await new Promise((r) => setTimeout(r, 100));
    good.stream.destroy();
    await waitFor(() => atSettlement.find((m) => m.payload === 'offline'), "gw-a's will");
    expect(atSettlement.map((m) => m.payload)).not.toContain('evil will');
  });

  it("keeps gateway A connected when gateway B connects with A's client id: Mosquitto uses the username instead", async () => {
    const s = await connect(SETTLEMENT_USERNAME, secrets.settlement);
    const atSettlement = collect(s);
    await s.subscribeAsync([topics.allStatus, topics.allReadings], { qos: 1 });
    const will = { topic: topics.status('gw-a'), payload: Buffer.from('{"v":1,"state":"offline"}'), qos: 1 as const, retain: true };
    const a = await connect('gw-a', secrets.a, { clientId: gatewayClientId('gw-a'), will });
    let aClosed = false;
    a.on('close', () => (aClosed = true));
    await a.publishAsync(topics.status('gw-a'), '{"v":1,"state":"online"}', { qos: 1, retain: true });
    await waitFor(() => atSettlement.find((m) => m.topic === topics.status('gw-a') && m.payload.includes('online')), "gw-a's online status");

    const b = await connect('gw-b', secrets.b, { clientId: gatewayClientId('gw-a') });
    expect(b.connected).toBe(true); // let in, but under its own name
    await waitFor(() => output.find((l) => /New client connected from .* as gw-b /.test(l)), 'Mosquitto naming the connection gw-b');
    // A barrier: A's reading after B's login reaches the settlement, so a will fired by it would have too.
    await a.publishAsync(topics.readings('gw-a'), 'a is still here', { qos: 1 });
    await waitFor(() => atSettlement.find((m) => m.payload === 'a is still here'), "gw-a's reading after B's login");
    expect(aClosed).toBe(false);
    expect(a.connected).toBe(true);
    expect(atSettlement.filter((m) => m.topic === topics.status('gw-a') && m.payload.includes('offline'))).toEqual([]);
  });

  it("never lets the password sync touch the settlement's own line, and still syncs gateways", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    const sync = new MosquittoPasswordSync({ passwordFile, pidFile, log });
    const before = readFileSync(passwordFile, 'utf8');
    for (const name of [SETTLEMENT_USERNAME, 'GTX-Settlement-2', 'gtx-settlement-1']) {
      expect(() => sync.issued(name, 'attacker-chosen'), name).toThrow(/belong to the settlement/);
      expect(() => sync.revoked(name), name).toThrow(/belong to the settlement/);
    }
    expect(readFileSync(passwordFile, 'utf8')).toBe(before);
    expect(lines.filter((l) => l.msg === 'Mosquitto password file change refused')).toHaveLength(6);
    expect(lines[0]).toMatchObject({ level: 50, gateway: SETTLEMENT_USERNAME, reason: 'reserved name', passwordFile });

    // An ordinary gateway goes in (and Mosquitto reloads); the settlement still logs in with its secret.
    const c = newSecret();
    sync.issued('gw-c', c);
    await waitFor(
      () => mqtt.connectAsync(url, options('gw-c', c)).then((cl) => (clients.push(cl), true), () => false),
      'gw-c let in after the reload',
    );
    expect((await connect(SETTLEMENT_USERNAME, secrets.settlement)).connected).toBe(true);
  });

  it('revokes a gateway: its line removed from the password file and SIGHUP disconnects it and refuses it from then on', async () => {
    const b = await connect('gw-b', secrets.b);
    const gone = new Promise<void>((resolve) => b.once('close', () => resolve()));
    writeFileSync(passwordFile, removeFromPasswordFile(readFileSync(passwordFile, 'utf8'), ['gw-b']), { mode: 0o600 });
    mosq!.reload();
    await gone;
    expect([4, 5]).toContain(await refusedWith('gw-b', secrets.b));
    expect((await connect('gw-a', secrets.a)).connected).toBe(true);
  });
});
